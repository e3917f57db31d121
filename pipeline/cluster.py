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
class SlurmConfig:
    """A dask-jobqueue SLURM cluster: ``jobs`` batch jobs, each one dask worker with
    ``cores`` threads, ``memory`` and ``gpus`` GPUs (exposed as the worker resource ``GPU``,
    so each part task holds one GPU). Load it from YAML with ``SlurmConfig.from_yaml``."""

    queue: str | None = None
    account: str | None = None
    walltime: str = "04:00:00"
    gpus: int = 1
    cores: int = 8
    memory: str = "32GB"
    jobs: int = 4
    python: str | None = None  # the worker's Python (default: this one)
    extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()  # e.g. "module load cuda", "source venv/bin/activate"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> SlurmConfig:
        import yaml

        try:
            raw = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the SLURM config ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of SLURM settings")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown SLURM setting(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        for key in ("extra_directives", "job_script_prologue"):
            if key in raw:
                raw[key] = tuple(raw[key])
        cfg = cls(**raw)
        for key in ("gpus", "cores", "jobs"):
            if not isinstance(getattr(cfg, key), int) or getattr(cfg, key) < (
                0 if key == "gpus" else 1
            ):
                raise ConfigError(f"{path}: field '{key}' must be a positive integer")
        return cfg


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where part tasks run."""

    workers: int = 1
    scheduler: str | None = None
    part_slice: str | None = None
    slurm: SlurmConfig | None = None


def make_slurm_cluster(cfg: SlurmConfig) -> Any:
    """A dask-jobqueue SLURMCluster (nothing is submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            "--cluster slurm needs dask-jobqueue: pip install 'aamflow[cluster]'"
        ) from None
    directives = list(cfg.extra_directives)
    extra_args = []
    if cfg.gpus:
        directives.append(f"--gres=gpu:{cfg.gpus}")
        extra_args = ["--resources", f"GPU={cfg.gpus}"]
    return SLURMCluster(
        cores=cfg.cores,
        processes=1,
        memory=cfg.memory,
        queue=cfg.queue,
        account=cfg.account,
        walltime=cfg.walltime,
        python=cfg.python,
        job_extra_directives=directives,
        job_script_prologue=list(cfg.job_script_prologue),
        worker_extra_args=extra_args,
        scheduler_options={"dashboard_address": None},
    )


def slurm_job_script(cfg: SlurmConfig) -> str:
    """The sbatch script each dask worker job would run (no SLURM needed to see it)."""
    cluster = make_slurm_cluster(cfg)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


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
    if cluster.scheduler is None and cluster.workers == 1 and cluster.slurm is None:
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

    resources = None
    if cluster.slurm is not None:
        local = make_slurm_cluster(cluster.slurm)
        local.scale(jobs=cluster.slurm.jobs)
        client = Client(local)
        if cluster.slurm.gpus:
            resources = {"GPU": 1}  # one GPU per part task
    elif cluster.scheduler:
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
            client.submit(fn, item, pure=False, key=f"aamflow-task-{k}", resources=resources)
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
