"""Benchmark train-adapter's training steps: videos per second and the projected time of a
100-epoch run on a Kinetics-400-sized cache (240k videos, 768-d, 10 static clips each).

The cache is random features built directly on the device (no store I/O: this measures the
GPU-resident step loop, which is what a resident run does every epoch). On a small CPU use a
scaled-down cache; the projection is linear in the number of videos because a step's cost
depends only on the batch, not on the cache size.

    python benchmarks/train.py                       # CPU, 2048-video cache
    python benchmarks/train.py --device cuda --videos 240000 --precision bf16

It prints one line to paste into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from aamflow.stages.train.config import TrainConfig
from aamflow.stages.train.data import TrainData
from aamflow.stages.train.stage import amp_dtype, build_model, train_one_epoch

K400_VIDEOS = 240_000
EPOCHS = 100


def random_cache(
    videos: int, static: int, clips: int, dim: int, classes: int, device: torch.device
) -> TrainData:
    """A resident AR-only cache of random latents: every video has ``static`` static clips,
    ``clips`` clips and an action label."""
    gen = torch.Generator(device=device).manual_seed(0)
    n = torch.arange(videos, device=device)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return TrainData(
        static=torch.randn(videos * static, dim, generator=gen, device=device),
        clips=torch.randn(videos * clips, dim, generator=gen, device=device),
        lb_static_start=n * static,
        lb_static_count=torch.full_like(n, static),
        lb_clip_start=n * clips,
        lb_clip_count=torch.full_like(n, clips),
        ar_clip_start=n * clips,
        ar_clip_count=torch.full_like(n, clips),
        ar_label=torch.randint(classes, (videos,), generator=gen, device=device),
        tad_clip_start=empty,
        tad_clip_count=empty,
        tad_gt=torch.zeros(0, 1, 3, device=device),
        tad_len=1,
        ad_lo=empty.view(0, 32),
        ad_hi=empty.view(0, 32),
        ad_label=empty,
        videos=videos,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--videos", type=int, default=2048, help="videos in the (scaled) cache")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--static", type=int, default=10, help="static clips per video")
    ap.add_argument("--clips", type=int, default=4, help="clips per video (memory only)")
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--arch", default="token_attention")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = TrainConfig(
        store="bench",  # unused: the cache is built in memory
        arch=args.arch,
        tasks=("ar",),
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        quiet=True,
    )
    torch.manual_seed(0)
    data = random_cache(args.videos, args.static, args.clips, args.dim, args.classes, device)
    model = build_model(cfg, args.dim, args.classes, device)
    gen = torch.Generator(device=device).manual_seed(0)
    amp = amp_dtype(cfg, device)

    def epoch() -> tuple[int, float]:
        t0 = time.perf_counter()
        sums, steps, videos = train_one_epoch(model, iter([data]), cfg, gen, amp)
        sums.tolist()  # wait for the device
        return videos, time.perf_counter() - t0

    epoch()  # warm-up: allocator, kernels, lazy init
    done, seconds = 0, 0.0
    for _ in range(args.epochs):
        v, s = epoch()
        done, seconds = done + v, seconds + s
    vps = done / seconds
    projected_h = EPOCHS * K400_VIDEOS / vps / 3600
    cache_gb = K400_VIDEOS * (args.static + 15) * args.dim * 4 / 1e9
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU {platform.machine()} x{torch.get_num_threads()} threads"
    scale = args.videos / K400_VIDEOS
    print(
        f"train-adapter | {where} | {args.arch}, batch {args.batch_size} videos, "
        f"{args.dim}-d, {args.static} static/video, AR head {args.classes} classes, "
        f"{args.precision} | {vps:,.0f} videos/s ({done // args.batch_size} steps timed) | "
        f"100 epochs x 240k videos: {projected_h:.2f} h projected "
        f"(cache {args.videos:,} videos = {scale:.1%} of K400; "
        f"a resident K400 cache with 15 clips/video needs {cache_gb:.0f} GB)"
    )
    if not math.isfinite(vps):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
