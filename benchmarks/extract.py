"""Benchmark: extract pipeline clips/s against the encoder alone, same encoder and batch.

Pipeline = decode -> preprocess -> encode -> committed store, counting every encoded clip
(ordinary and static). Encoder-only = the same encoder and batch size on pre-decoded,
cropped uint8 frames already in host memory, through the same device path (copy, gather,
normalise, encode). A ratio near 1 means the encoder is the bottleneck.

    python benchmarks/extract.py --preset tiny [--encoder builtin] [--device cuda --precision bf16]
    python benchmarks/extract.py --encoder videomae --encoder-config videomae-base --device cuda --precision bf16
    python benchmarks/extract.py --preset tiny --crops 10   # ten-crop cost (compare --crops 1)

With ``--crops 10`` every clip is encoded in ten views; the pipeline figure counts clips (each
ten encoder rows) and the script also prints the run's wall and CPU seconds (this process and
its loader workers), the numbers to compare against ``--crops 1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def encoder_only(args: argparse.Namespace, n_clips: int, input_size: int) -> float:
    """Clips/s of the encoder on uint8 frames already in (pinned) host memory: the
    pipeline's device path (copy, gather, normalise, encode, copy back) without decoding.
    Every clip has its own frames, so the copy is the largest the pipeline ever makes."""
    import torch

    from aamflow.stages.extract.stage import _encode_pixels, _encoder

    opts = {"config": args.encoder_config} if args.encoder_config else {}
    enc = _encoder(args.encoder, json.dumps(opts, sort_keys=True), args.device)
    t = enc.identity.clip_len
    shape = (args.batch_size * t, input_size, input_size, 3)
    frames = torch.randint(0, 255, shape, dtype=torch.uint8).numpy()
    pixels = enc.transform.crop_frames(frames).contiguous()
    gather = torch.arange(len(pixels)).view(args.batch_size, t)
    if args.device.startswith("cuda"):
        pixels, gather = pixels.pin_memory(), gather.pin_memory()

    def run() -> torch.Tensor:
        return _encode_pixels(enc, pixels, gather, args.device, args.precision)

    run().cpu()  # warm-up
    done, t0, out = 0, time.perf_counter(), None
    while done < n_clips:
        out = run()  # queued: the pipeline does not wait for each batch either
        done += args.batch_size
    out.cpu()
    return done / (time.perf_counter() - t0)


def matching_clip_len(manifest: Path, args: argparse.Namespace) -> Path:
    """The manifest, or a copy beside it whose clip_len is the encoder's (e.g. the tiny
    videomae config encodes 4 frames, the synthetic corpora are sampled with 16)."""
    import yaml

    from aamflow.stages.extract.stage import _encoder

    opts = {"config": args.encoder_config} if args.encoder_config else {}
    t = _encoder(args.encoder, json.dumps(opts, sort_keys=True), "cpu").identity.clip_len
    doc = yaml.safe_load(manifest.read_text())
    if doc["sampling"]["clip_len"] == t:
        return manifest
    doc["sampling"]["clip_len"] = t
    out = manifest.with_name(f"{manifest.stem}_clip{t}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


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
    ap.add_argument("--crops", type=int, default=1, choices=[1, 10])
    args = ap.parse_args()
    import resource

    from aamflow.schemas.store import open_store
    from aamflow.stages.extract.config import ExtractConfig
    from aamflow.stages.extract.stage import run_extract
    from aamflow.stages.synth import SynthConfig, run_synth

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest or run_synth(
            SynthConfig(out=Path(tmp) / "corpus", preset=args.preset, quiet=True)
        )
        if args.manifest is None:
            manifest = matching_clip_len(manifest, args)
        out = Path(tmp) / "features.zarr"
        t = time.perf_counter()
        cpu0 = time.process_time()
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
                workers=1,  # this process and its loaders (scaleout.py measures clusters)
                crops=args.crops,
                quiet=True,
            )
        )
        seconds = time.perf_counter() - t
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - cpu0 + kids.ru_utime + kids.ru_stime
        s = open_store(out)
        n = s.meta["index"]["totals"]["clips"] + s.meta["index"]["totals"]["static"]
        size = int(s.sampling["input_size"]) if args.encoder == "builtin" else 224
    pipe = n * args.crops / seconds  # encoder rows/s: a ten-crop clip is ten encoder rows
    enc = encoder_only(args, min(n, 2048), size)
    print(
        f"encoder {args.encoder} ({args.encoder_config or 'default'}), device {args.device}, {args.precision}, batch {args.batch_size}"
    )
    print(
        f"pipeline (decode -> committed store): {pipe:8.1f} clips/s  "
        f"({n} clips x {args.crops} crops in {seconds:.1f} s)"
    )
    print(f"encoder only (pre-decoded tensors):   {enc:8.1f} clips/s")
    print(f"ratio pipeline / encoder-only: {pipe / enc:.2f}  (target >= 0.8)")
    print(
        f"crops {args.crops}: extract took {seconds:.1f} s wall, {cpu:.1f} CPU-s "
        f"({n} clips, {n * args.crops} encoder rows)"
    )


if __name__ == "__main__":
    main()
