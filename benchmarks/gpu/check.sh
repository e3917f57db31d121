#!/usr/bin/env bash
# The device check for issue 8, as one prepared script (run it through the device tool):
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl"], timeout_s=540)
# It installs the carried wheels and aamflow into /tmp/site, runs the CUDA-marked checks and
# the three benchmarks on the GPU, and leaves every log under $OUT.
set -uo pipefail
OUT="${OUT:-/tmp/aamflow-gpu-out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || exit 1
{ nvidia-smi; python3 -c "import torch, aamflow.stages.extract.stage as s; print(torch.__version__, torch.cuda.get_device_name(0))"; } 2>&1 | tee "$OUT/device.txt"
# 1. extract: VideoMAE-Base config (random init, same FLOPs), bf16, vs the encoder alone
timeout 200 python3 benchmarks/extract.py --preset demo --encoder videomae --encoder-config base \
  --device cuda --precision bf16 --batch-size 64 --loader-workers 8 2>&1 | tee "$OUT/extract.txt"
# 2. train-adapter on a K400-sized projection, GPU-resident latents
timeout 120 python3 benchmarks/train.py --device cuda 2>&1 | tee "$OUT/train.txt"
# 3. anonymize vs a plain rewrite, AAM on CUDA
timeout 120 python3 benchmarks/anonymize.py --videos 4000 --dim 768 --device cuda --batch-size 8192 2>&1 | tee "$OUT/anonymize.txt"
echo "logs in $OUT"
