"""Benchmark: extract pipeline clips/s against the encoder alone, same encoder and batch.

Pipeline = decode -> preprocess -> encode -> committed store, counting every encoded clip
(ordinary and static). Encoder-only = the same encoder and batch size on pre-decoded,
preprocessed tensors already in memory. A ratio near 1 means the encoder is the bottleneck.

    python benchmarks/extract.py --preset tiny [--encoder builtin] [--device cuda --precision bf16]
    python benchmarks/extract.py --encoder videomae --encoder-config videomae-base --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def encoder_only(args: argparse.Namespace, n_clips: int, input_size: int) -> float:
    import torch

    from aamflow.stages.extract.stage import _encode, _encoder

    opts = {"config": args.encoder_config} if args.encoder_config else {}
    enc = _encoder(args.encoder, json.dumps(opts, sort_keys=True), args.device)
    frames = torch.randint(0, 255, (16, input_size, input_size, 3), dtype=torch.uint8).numpy()
    x = enc.preprocess(frames).unsqueeze(0).repeat(args.batch_size, 1, 1, 1, 1)
    if args.device.startswith("cuda"):
        x = x.pin_memory()
    _encode(enc, x, args.device, args.precision)  # warm-up
    done, t = 0, time.perf_counter()
    while done < n_clips:
        _encode(enc, x, args.device, args.precision)
        done += len(x)
    return done / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="tiny", choices=["tiny", "demo", "bench"])
    ap.add_argument(
        "--manifest", type=Path, default=None, help="use an existing corpus instead of synth"
    )
    ap.add_argument("--encoder", default="builtin")
    ap.add_argument("--encoder-config", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loader-workers", type=int, default=1)
    args = ap.parse_args()
    from aamflow.schemas.store import open_store
    from aamflow.stages.extract.config import ExtractConfig
    from aamflow.stages.extract.stage import run_extract
    from aamflow.stages.synth import SynthConfig, run_synth

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest or run_synth(
            SynthConfig(out=Path(tmp) / "corpus", preset=args.preset, quiet=True)
        )
        out = Path(tmp) / "features.zarr"
        t = time.perf_counter()
        run_extract(
            ExtractConfig(
                manifest=manifest,
                out=out,
                encoder=args.encoder,
                encoder_config=args.encoder_config,
                device=args.device,
                precision=args.precision,
                batch_size=args.batch_size,
                loader_workers=args.loader_workers,
                quiet=True,
            )
        )
        seconds = time.perf_counter() - t
        s = open_store(out)
        n = s.meta["index"]["totals"]["clips"] + s.meta["index"]["totals"]["static"]
        size = int(s.sampling["input_size"]) if args.encoder == "builtin" else 224
    pipe = n / seconds
    enc = encoder_only(args, min(n, 2048), size)
    print(
        f"encoder {args.encoder} ({args.encoder_config or 'default'}), device {args.device}, {args.precision}, batch {args.batch_size}"
    )
    print(
        f"pipeline (decode -> committed store): {pipe:8.1f} clips/s  ({n} clips in {seconds:.1f} s)"
    )
    print(f"encoder only (pre-decoded tensors):   {enc:8.1f} clips/s")
    print(f"ratio pipeline / encoder-only: {pipe / enc:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
