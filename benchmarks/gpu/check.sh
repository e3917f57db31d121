#!/usr/bin/env bash
# The device check, as one prepared script (run it through the device tool):
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=540)
# It installs the carried wheels and aamflow into $SITE, then runs, each step independent
# and under its own time limit (a failing step never stops the next):
#   device.txt     nvidia-smi, torch, the GPU, /dev/shm, the install log
#   tests.txt      the CUDA-marked tests (tests/test_cuda.py)
#   train.txt      benchmarks/train.py in fp32 and bf16 on a large resident cache
#   anonymize.txt  benchmarks/anonymize.py on the GPU
#   scaleout.txt   benchmarks/scaleout.py on the CPU cores: extract and anonymize, k = 1, 2, 4, ... workers
#   extract.txt    benchmarks/extract.py, VideoMAE-Base (random init), bf16, demo corpus
#   summary.txt    one line per step: exit code and seconds
# Every step's limit is also capped by what is left of BUDGET seconds (default 420), so the
# whole script ends inside the device call's limit. The riskiest step (extract) runs last.
#
# Dry run on a CPU machine (small sizes, no wheel install, aamflow still installed into $SITE):
#   DEVICE=cpu SMALL=1 SKIP_INSTALL=1 OUT=/tmp/gpucheck SITE=/tmp/gpucheck-site bash benchmarks/gpu/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT="${OUT:-/tmp/aamflow-gpu-out}"
DEVICE="${DEVICE:-cuda}"
SMALL="${SMALL:-0}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
SITE="${SITE:-/tmp/site}"
BUDGET="${BUDGET:-420}"
PY="${PY:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
START=$SECONDS
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "device check: DEVICE=$DEVICE SMALL=$SMALL BUDGET=${BUDGET}s $(date -u +%FT%TZ)" >"$SUMMARY"

# step NAME LOG CAP_SECONDS CMD...: run CMD under min(CAP, budget left), append to LOG
step() {
  local name=$1 log=$2 cap=$3
  shift 3
  local left=$((BUDGET - (SECONDS - START)))
  local limit=$((cap < left ? cap : left))
  if ((limit < 5)); then
    echo "=== $name: skipped, budget spent" | tee -a "$log" "$SUMMARY"
    return
  fi
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  local why=""
  ((rc == 124 || rc == 137)) && why=" (timed out)"
  echo "=== $name: rc=$rc$why in $((SECONDS - t0))s" | tee -a "$log" "$SUMMARY"
}

# --- install: carried wheels (cp312) and aamflow itself, non-editable, into $SITE ---------
install() {
  if [[ "$SKIP_INSTALL" != 1 ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || return 1
  fi
  # a copy of the tree, so the build's build/ and egg-info never touch the checkout
  local src="$WORK/src"
  mkdir -p "$src"
  cp -r pyproject.toml README.md pipeline schemas stages "$src"/ || return 1
  if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade \
    --target "$SITE" "$src"; then
    # fallback, so the later steps still run: the source folders linked as aamflow.*
    echo "aamflow install FAILED: linking the source folders into $SITE/aamflow instead"
    mkdir -p "$SITE/aamflow"
    for d in pipeline schemas stages; do ln -sfn "$PWD/$d" "$SITE/aamflow/$d"; done
    return 1
  fi
}
export -f install
export SKIP_INSTALL PY SITE WORK
step install "$OUT/device.txt" 120 bash -c install
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# --- device info ------------------------------------------------------------------------
info() {
  nvidia-smi || echo "(no nvidia-smi)"
  df -h /dev/shm /tmp || true
  free -g || true
  nproc
  "$PY" - <<'EOF'
import importlib, platform, sys
import torch
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", f"{p.multi_processor_count} SMs")
    print("tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "cudnn tf32", torch.backends.cudnn.allow_tf32)
for name in ("zarr", "numcodecs", "dask", "dask.array", "distributed", "av", "decord", "h5py",
             "xarray", "transformers", "safetensors", "aamflow.stages.train.stage",
             "aamflow.stages.extract.encoders.videomae", "aamflow.pipeline.cli"):
    try:
        m = importlib.import_module(name)
        print(f"import {name}: ok {getattr(m, '__version__', '')} {getattr(m, '__file__', '')}")
    except Exception as e:
        print(f"import {name}: FAILED {type(e).__name__}: {e}")
EOF
}
export -f info
step info "$OUT/device.txt" 60 bash -c info

# --- sizes ------------------------------------------------------------------------------
if [[ "$SMALL" == 1 ]]; then
  TRAIN_ARGS=(--videos 1024 --batch-size 256 --epochs 1)
  ANON_ARGS=(--videos 200 --dim 64 --batch-size 1024)
  # VideoMAE-Base on the CPU is ~4 s a clip: one trimmed video, 2 static clips
  "$PY" - "$WORK" <<'EOF' >>"$OUT/extract.txt" 2>&1
import sys
from pathlib import Path
import yaml
from aamflow.stages.synth import SynthConfig, run_synth
from tests.corpus import subset_manifest
work = Path(sys.argv[1])
corpus = run_synth(SynthConfig(out=work / "corpus", preset="tiny", quiet=True))
m = subset_manifest(corpus, work / "small.yaml", 1, tasks=("ar",))
doc = yaml.safe_load(m.read_text())
doc["sampling"]["static_per_video"] = 2
m.write_text(yaml.safe_dump(doc, sort_keys=False))
print("small extract corpus:", m)
EOF
  EXTRACT_ARGS=(--manifest "$WORK/small.yaml" --batch-size 4 --loader-workers 1)
else
  TRAIN_ARGS=(--videos 65536 --batch-size 512 --epochs 3)
  ANON_ARGS=(--videos 4000 --dim 768 --batch-size 8192)
  # loader workers ship float32 224-px clips (9.6 MB each) through /dev/shm: fewer workers
  # when it is small, so the loader cannot run out of shared memory
  shm_gb=$(df -BG --output=avail /dev/shm 2>/dev/null | tail -1 | tr -dc 0-9)
  workers=12
  ((${shm_gb:-0} < 32)) && workers=4
  EXTRACT_ARGS=(--preset demo --batch-size 64 --loader-workers "$workers")
  TINY_EXTRACT_ARGS=(--preset tiny --batch-size 64 --loader-workers "$workers")
  echo "/dev/shm has ${shm_gb:-?} GB free: $workers loader workers" >>"$OUT/extract.txt"
fi
TEST_ARGS=(-q -m cuda tests/test_cuda.py -p no:cacheprovider -rA --durations=15)
"$PY" -c "import pytest_timeout" 2>/dev/null && TEST_ARGS+=(--timeout=120)
export AAMFLOW_TEST_DEVICE="$DEVICE"

# --- checks and benchmarks, in order of importance --------------------------------------
# STEPS picks a subset for a rerun, e.g. STEPS="tests extract demo"
STEPS="${STEPS:-tests train anonymize scaleout extract_tiny extract demo}"
want() { [[ " $STEPS " == *" $1 "* ]]; }
want tests && step tests "$OUT/tests.txt" 150 "$PY" -m pytest "${TEST_ARGS[@]}"
for precision in fp32 bf16; do
  want train && step "train $precision" "$OUT/train.txt" 60 \
    "$PY" benchmarks/train.py --device "$DEVICE" --precision "$precision" "${TRAIN_ARGS[@]}"
done
want anonymize && step anonymize "$OUT/anonymize.txt" 100 \
  "$PY" benchmarks/anonymize.py --device "$DEVICE" "${ANON_ARGS[@]}"
# scale-out over the machine's CPU cores (the same script as on the 2-core machine)
SCALE_ARGS=(--part-size 2 --anon-videos 4000)
[[ "$SMALL" == 1 ]] && SCALE_ARGS=(--part-size 4 --anon-videos 200 --workers 1,2)
want scaleout && step scaleout "$OUT/scaleout.txt" 150 "$PY" benchmarks/scaleout.py "${SCALE_ARGS[@]}"
# the tiny corpus first (705 clips): a figure even if the demo corpus runs out of time
[[ "$SMALL" != 1 ]] && want extract_tiny && step "extract tiny" "$OUT/extract.txt" 90 \
  "$PY" benchmarks/extract.py --encoder videomae --encoder-config base \
  --device "$DEVICE" --precision bf16 "${TINY_EXTRACT_ARGS[@]}"
want extract && step extract "$OUT/extract.txt" 240 \
  "$PY" benchmarks/extract.py --encoder videomae --encoder-config base \
  --device "$DEVICE" --precision bf16 "${EXTRACT_ARGS[@]}"
# the main job end to end on the device (builtin encoder, demo corpus)
if [[ "$SMALL" != 1 ]] && want demo; then
  step demo "$OUT/demo.txt" 200 bash -c "time $PY -m aamflow.pipeline --quiet demo --out $WORK/demo --device $DEVICE && cat $WORK/demo/report/report.md"
fi

echo "total $((SECONDS - START))s; logs in $OUT" | tee -a "$SUMMARY"
ls -l "$OUT"
