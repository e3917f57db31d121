"""Benchmark train-adapter's training steps: videos per second and the projected time of a
100-epoch run on a Kinetics-400-sized cache (240k videos, 768-d, 10 static clips each).

The cache is random features built directly on the device (no store I/O: this measures the
GPU-resident step loop, which is what a resident run does every epoch). On a small CPU use a
scaled-down cache; the projection is linear in the number of videos because a step's cost
depends only on the batch, not on the cache size.

Baseline, measured in the same run: the AAM alone (forward, a plain sum, backward and the
AdamW step) on a pre-built tensor with as many rows as a full step stacks, in the same
precision. The ratio of the two says what sampling, the heads and the loss terms cost on top
of the adapter itself.

    python benchmarks/train.py                       # CPU, 2048-video cache
    python benchmarks/train.py --device cuda --videos 240000 --precision bf16

It prints one line to paste into benchmarks/RESULTS.md, then the baseline and the ratio.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from aamflow.stages.models.aam import build_aam
from aamflow.stages.train.config import TrainConfig
from aamflow.stages.train.data import TrainData, epoch_orders, plan_steps, sample_step
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


def step_rows(data: TrainData, config: TrainConfig, device: torch.device) -> tuple[int, int]:
    """(steps per epoch, rows the AAM sees per step) of an epoch over ``data``."""
    plan = plan_steps(data, config.batch_size, config.tasks or ())
    gen = torch.Generator(device=device).manual_seed(1)
    batch = sample_step(data, epoch_orders(data, plan, gen), 0, gen)
    return plan.steps, int(batch.x.shape[0])


def aam_only(
    config: TrainConfig,
    dim: int,
    rows: int,
    steps: int,
    epochs: int,
    amp: torch.dtype | None,
    device: torch.device,
) -> float:
    """Seconds per step of the AAM alone: forward, a plain sum, backward and the AdamW step
    (fused on CUDA, as train-adapter builds it) on a fixed ``[rows, dim]`` batch, under the
    same autocast and grad scaler as a full step. One epoch of ``steps`` warms up, then
    ``epochs`` epochs are timed."""
    aam = build_aam(config.arch, dim, **config.hparams).to(device)
    opt = torch.optim.AdamW(
        aam.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    x = torch.randn(rows, dim, device=device)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for _ in range(n):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = aam(x).float().sum()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.detach()
        total.item()  # wait for the device
        return time.perf_counter() - t0

    run(steps)  # warm-up
    return run(steps * epochs) / (steps * epochs)


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
    steps, rows = step_rows(data, cfg, device)
    step_s = seconds / (steps * args.epochs)
    base_s = aam_only(cfg, args.dim, rows, steps, args.epochs, amp, device)
    base_vps = done / (steps * args.epochs) / base_s  # same videos per step as the full step
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
    print(
        f"samples/s (rows through the AAM, {rows} per step): train step {rows / step_s:,.0f} | "
        f"AAM-only step {rows / base_s:,.0f}"
    )
    print(
        f"AAM-only step (forward + sum + backward + AdamW, [{rows}, {args.dim}] batch, "
        f"{args.precision}): {base_vps:,.0f} videos/s | train step {vps:,.0f} videos/s"
    )
    print(f"ratio train step / AAM-only step: {vps / base_vps:.2f}")
    if not (math.isfinite(vps) and math.isfinite(base_vps)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
