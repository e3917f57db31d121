"""Benchmark: scale-out of extract and anonymize over k = 1, 2, 4, ... dask worker processes.

For each k the script starts a LocalCluster of k single-threaded workers and runs the stage
on it (``--scheduler``), on the same input every time. Throughput is measured from the
first task to the last commit, so the cluster's start is reported apart (``start s``);
the ratio is throughput(k) / (k x throughput(1)), the goal being >= 0.9 up to the cores.
Every k must give the same bytes as k = 1 (``same`` column). Two in-process rows are the
alternative that ``--workers`` picks for small inputs: extract with one loader process,
anonymize in this process.

    python benchmarks/scaleout.py                       # tiny corpus, k = 1, 2, ... cores
    python benchmarks/scaleout.py --workers 1,2,4,8,16 --preset demo --anon-videos 4000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_counts(text: str | None) -> list[int]:
    if text:
        return [int(k) for k in text.split(",")]
    ks, k = [], 1
    while k < usable_cores():
        ks.append(k)
        k *= 2
    return ks + [usable_cores()]


def timed_on_cluster(k: int, run) -> tuple[float, float]:
    """(seconds to start a k-worker LocalCluster, seconds ``run(address)`` takes on it)."""
    import logging

    from distributed import Client, LocalCluster

    t = time.perf_counter()
    cluster = LocalCluster(
        n_workers=k,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with Client(cluster) as client:
        client.wait_for_workers(k)
        start = time.perf_counter() - t
        t = time.perf_counter()
        run(cluster.scheduler_address)
        seconds = time.perf_counter() - t
    cluster.close()
    return start, seconds


def digest(store: Path) -> str:
    from tests.corpus import store_content_digest

    return store_content_digest(store)


def bench_extract(args: argparse.Namespace, root: Path, ks: list[int]) -> list[tuple]:
    from aamflow.stages.extract.config import ExtractConfig
    from aamflow.stages.extract.stage import run_extract
    from aamflow.stages.synth import SynthConfig, run_synth

    manifest = run_synth(SynthConfig(out=root / "corpus", preset=args.preset, quiet=True))

    def extract(out: Path, **kw) -> dict:
        return run_extract(
            ExtractConfig(
                manifest=manifest,
                out=out,
                part_size=args.part_size,
                batch_size=args.batch_size,
                quiet=True,
                **kw,
            )
        )

    rows = []
    t = time.perf_counter()
    s = extract(root / "inproc.zarr", workers=1, loader_workers=1)
    rows.append(("in-process + 1 loader", 0.0, time.perf_counter() - t, s["clips"], "clips"))
    ref = digest(root / "inproc.zarr")
    for k in ks:
        out = root / f"x{k}.zarr"
        start, sec = timed_on_cluster(k, lambda a, out=out: extract(out, scheduler=a))
        rows.append((f"k={k}", start, sec, s["clips"], "clips", digest(out) == ref))
    return rows


def bench_anonymize(args: argparse.Namespace, root: Path, ks: list[int]) -> list[tuple]:
    from anonymize import make_adapter, make_store

    from aamflow.schemas.store import open_store
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize

    store = root / "raw.zarr"
    make_store(store, args.anon_videos, args.dim, 8)
    make_adapter(store, args.arch)
    clips = open_store(store).meta["index"]["totals"]["clips"]

    def anonymize(out: Path, **kw) -> None:
        run_anonymize(AnonymizeConfig(store=store, out=out, quiet=True, **kw))

    rows = []
    t = time.perf_counter()
    anonymize(root / "a-inproc.zarr", workers=1)
    rows.append(("in-process", 0.0, time.perf_counter() - t, clips, "clips"))
    ref = digest(root / "a-inproc.zarr")
    for k in ks:
        out = root / f"a{k}.zarr"
        start, sec = timed_on_cluster(k, lambda a, out=out: anonymize(out, scheduler=a))
        rows.append((f"k={k}", start, sec, clips, "clips", digest(out) == ref))
    return rows


def table(name: str, rows: list[tuple]) -> str:
    one = next(r for r in rows if r[0] == "k=1")
    base = one[3] / one[2]
    lines = [
        f"{name}: | workers | start s | run s | {rows[0][4]}/s | ratio vs k x (k=1) | same bytes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        label, start, sec, n = r[:4]
        rate = n / sec
        k = int(label[2:]) if label.startswith("k=") else 1
        ratio = f"{rate / (k * base):.2f}"
        same = ("yes" if r[5] else "NO") if len(r) > 5 else "(reference)"
        lines.append(f"| {label} | {start:.1f} | {sec:.2f} | {rate:.1f} | {ratio} | {same} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workers", default=None, help="comma-separated k [default: 1, 2, 4, ... cores]"
    )
    ap.add_argument("--preset", default="tiny", help="synth corpus for extract")
    ap.add_argument("--part-size", type=int, default=4, help="videos per extract part")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--anon-videos", type=int, default=800)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--arch", default="token_attention")
    ap.add_argument("--only", choices=["extract", "anonymize"], default=None)
    args = ap.parse_args()
    ks = worker_counts(args.workers)
    print(f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}, k = {ks}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only != "anonymize":
            rows = bench_extract(args, root, ks)
            print(table(f"extract ({args.preset} corpus, part size {args.part_size})", rows))
        if args.only != "extract":
            rows = bench_anonymize(args, root, ks)
            print(table(f"anonymize ({args.anon_videos} videos, {args.dim}-d)", rows))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/anonymize.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.corpus
    main()
