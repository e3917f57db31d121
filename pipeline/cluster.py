"""Run per-part tasks: in this process, on a dask LocalCluster, on an existing scheduler,
or one ``--part I/N`` slice with no scheduler at all (plain SLURM array jobs).

Every part is an independent task that writes and commits exactly one store part, so the
result does not depend on how tasks are scheduled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aamflow.schemas.errors import ConfigError

log = logging.getLogger("aamflow.cluster")

P = TypeVar("P")


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where part tasks run."""

    workers: int = 1
    scheduler: str | None = None
    part_slice: str | None = None


def parse_slice(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; SLURM's ``$SLURM_ARRAY_TASK_ID/$N`` fits."""
    if text is None:
        return None
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--part {text!r}: expected I/N, for example 0/8") from None
    if n <= 0 or not 0 <= i < n:
        raise ConfigError(f"--part {text!r}: need 0 <= I < N")
    return i, n


def select_slice(items: Sequence[P], part_slice: str | None) -> list[P]:
    """The items slice ``I/N`` owns (round robin, so slices stay balanced)."""
    sl = parse_slice(part_slice)
    if sl is None:
        return list(items)
    i, n = sl
    return [x for k, x in enumerate(items) if k % n == i]


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))


def run_tasks(
    fn: Callable[[P], dict[str, Any]],
    items: Sequence[P],
    cluster: ClusterConfig,
    *,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` on every item and return the results in item order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one)
    when a cluster is used. ``on_done`` is called in this process as each result arrives.
    """
    if cluster.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {cluster.workers}")
    if not items:
        return []
    if cluster.scheduler is None and cluster.workers == 1:
        results = []
        for item in items:
            res = fn(item)
            if on_done:
                on_done(res)
            results.append(res)
        return results
    return _run_distributed(fn, items, cluster, on_done)


def _run_distributed(fn, items, cluster: ClusterConfig, on_done) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster, as_completed

    if cluster.scheduler:
        client = Client(cluster.scheduler)
        local = None
    else:
        # one thread per worker process: torch and codecs parallelise inside a task
        local = LocalCluster(
            n_workers=cluster.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(local)
    try:
        futures = [
            client.submit(fn, item, pure=False, key=f"aamflow-task-{k}")
            for k, item in enumerate(items)
        ]
        order = {f.key: k for k, f in enumerate(futures)}
        results: list[dict[str, Any] | None] = [None] * len(items)
        for fut in as_completed(futures):
            res = fut.result()
            results[order[fut.key]] = res
            if on_done:
                on_done(res)
        return [r for r in results if r is not None]
    finally:
        client.close()
        if local is not None:
            local.close()
