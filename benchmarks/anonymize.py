"""Benchmark: anonymize throughput against a plain read-and-rewrite of the same store.

Both runs read every part, write a new store with the same codec and commit it; the
baseline copies features unchanged, anonymize passes them through the AAM. Peak RSS is
measured in fresh subprocesses for two store sizes: it should not grow with the store.

    python benchmarks/anonymize.py --videos 2000 --dim 768 [--device cuda] [--arch token_attention]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_store(path: Path, videos: int, dim: int, clips: int) -> None:
    from aamflow.schemas.fake import fake_store

    fake_store(
        path,
        n_videos=videos,
        dim=dim,
        clips_per_video=clips,
        static_per_video=10,
        part_size=max(1, videos // 8),
    )


def make_adapter(store: Path, arch: str) -> Path:
    import torch

    from aamflow.schemas.checkpoint import AdapterMetadata, default_adapter_dir, save_checkpoint
    from aamflow.schemas.store import open_store
    from aamflow.stages.models.aam import build_aam

    s = open_store(store)
    torch.manual_seed(0)
    m = build_aam(arch, s.feature_dim)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    meta = AdapterMetadata(
        arch=arch,
        hparams=m.hparams,
        input_dim=s.feature_dim,
        encoder=s.encoder,
        train_store_uuid=s.uuid,
        loss_weights={},
    )
    return save_checkpoint(default_adapter_dir(store), m.state_dict(), meta)


def copy_store(src: Path, dst: Path) -> None:
    """The floor for any rewrite: every part read and rewritten, features unchanged."""
    from aamflow.schemas.store import create_store, index_store, open_store, store_plan
    from aamflow.stages.anonymize.stage import rewrite_part

    meta = json.loads(json.dumps(open_store(src).meta))
    meta["index"] = None
    create_store(dst, {"aamflow": meta})
    for plan in store_plan(src):
        rewrite_part(plan, src=str(src), dst=str(dst))
    index_store(dst)


def feature_mb(store: Path) -> float:
    from aamflow.schemas.store import open_store

    s = open_store(store)
    n = s.meta["index"]["totals"]
    return (n["clips"] + n["static"]) * s.feature_dim * 4 / 1e6


def one_run(args: argparse.Namespace) -> None:
    """Child mode: anonymize one store and print peak RSS (MB)."""
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize

    run_anonymize(
        AnonymizeConfig(
            store=Path(args.child),
            device=args.device,
            batch_size=args.batch_size,
            workers=1,
            quiet=True,
            overwrite=True,
        )
    )
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--clips", type=int, default=8, help="clips per video")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--arch", default="token_attention")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        one_run(args)
        return
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "features.zarr"
        make_store(store, args.videos, args.dim, args.clips)
        make_adapter(store, args.arch)
        mb = feature_mb(store)
        t = time.perf_counter()
        copy_store(store, root / "copy.zarr")
        t_copy = time.perf_counter() - t
        t = time.perf_counter()
        run_anonymize(
            AnonymizeConfig(
                store=store,
                device=args.device,
                batch_size=args.batch_size,
                workers=1,  # one process, as the copy baseline (scaleout.py measures clusters)
                quiet=True,
            )
        )
        t_anon = time.perf_counter() - t
        rss = {}
        for videos in (args.videos // 4, args.videos):
            s = root / f"rss{videos}.zarr"
            make_store(s, videos, args.dim, args.clips)
            make_adapter(s, args.arch)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(s),
                    "--device",
                    args.device,
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rss[videos] = float(out.stdout.strip().splitlines()[-1])
    copy_mbs, anon_mbs = mb / t_copy, mb / t_anon
    print(
        f"store: {args.videos} videos, {mb:.0f} MB of features ({args.dim}-d float32), arch {args.arch}, device {args.device}"
    )
    print(f"plain read+rewrite: {copy_mbs:8.1f} MB/s  ({t_copy:.2f} s)")
    print(f"anonymize:          {anon_mbs:8.1f} MB/s  ({t_anon:.2f} s)")
    print(f"ratio anonymize / rewrite: {anon_mbs / copy_mbs:.2f}  (target >= 0.8)")
    sizes = sorted(rss)
    print(
        f"peak RSS: {sizes[0]} videos {rss[sizes[0]]:.0f} MB, {sizes[1]} videos {rss[sizes[1]]:.0f} MB (ratio {rss[sizes[1]] / rss[sizes[0]]:.2f}; should stay ~1)"
    )


if __name__ == "__main__":
    main()
