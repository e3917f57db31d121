"""Run per-part tasks: in this process, on a dask LocalCluster, on an existing scheduler,
or one ``--part I/N`` slice with no scheduler at all (plain SLURM array jobs).

Every part is an independent task that writes and commits exactly one store part, so the
result does not depend on how tasks are scheduled.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from aamflow.schemas.errors import ConfigError

from .errors import one_line

log = logging.getLogger("aamflow.cluster")

P = TypeVar("P")


# SLURM's --time forms: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds
_WALLTIME = re.compile(r"(\d+-\d+(:[0-5]?\d){0,2}|\d+(:[0-5]?\d){0,2})")
CONNECT_TIMEOUT = 10.0  # seconds to reach a --scheduler or the SLURM controller


@dataclass(frozen=True, kw_only=True)
class SlurmConfig:
    """A dask-jobqueue SLURM cluster: ``jobs`` batch jobs on partition ``queue``, each one
    dask worker with ``cores`` threads, ``memory`` and ``gpus`` GPUs (exposed as the worker
    resource ``GPU``, so each part task holds one GPU). Load it from YAML with
    ``SlurmConfig.from_yaml``; an invalid value raises ``ConfigError`` naming the field."""

    queue: str  # -p: the partition; required, so a job never lands in a default by accident
    account: str | None = None
    walltime: str = "04:00:00"
    gpus: int = 1
    cores: int = 8
    memory: str = "32GB"
    jobs: int = 4
    python: str | None = None  # the worker's Python (default: this one)
    log_directory: str | None = None  # where the jobs' output files go (default: sbatch's)
    extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()  # e.g. "module load cuda", "source venv/bin/activate"

    def __post_init__(self) -> None:
        for key in ("queue", "walltime", "memory"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                raise ConfigError(f"field '{key}' must be a non-empty string")
        for key in ("account", "python", "log_directory"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"field '{key}' must be a string")
        for key, least in (("gpus", 0), ("cores", 1), ("jobs", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                what = "a non-negative" if least == 0 else "a positive"
                raise ConfigError(f"field '{key}' must be {what} integer, got {value!r}")
        for key in ("extra_directives", "job_script_prologue"):
            if not all(isinstance(x, str) for x in getattr(self, key)):
                raise ConfigError(f"field '{key}' must be a list of strings")
        if not _WALLTIME.fullmatch(self.walltime):
            raise ConfigError(
                f"field 'walltime' {self.walltime!r} does not parse: use SLURM's "
                '[days-]hours:minutes:seconds, e.g. "04:00:00" or "1-12:00:00"'
            )
        from dask.utils import parse_bytes

        try:
            parse_bytes(self.memory)
        except ValueError:
            raise ConfigError(
                f"field 'memory' {self.memory!r} does not parse: use a size like 32GB"
            ) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> SlurmConfig:
        import yaml

        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the SLURM config ({one_line(e)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of SLURM settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(raw) - known))
        if unknown:
            raise ConfigError(
                f"{path}: unknown SLURM setting(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        if "queue" not in raw:
            raise ConfigError(f"{path}: field 'queue' is missing: name the SLURM partition (-p)")
        if isinstance(raw.get("walltime"), int):  # YAML 1.1 reads 4:00:00 as 14400
            raise ConfigError(
                f"{path}: field 'walltime' must be quoted (YAML reads {raw['walltime']} as a "
                'number of seconds): write walltime: "04:00:00"'
            )
        for key in ("extra_directives", "job_script_prologue"):
            if key in raw:
                if not isinstance(raw[key], list):
                    raise ConfigError(f"{path}: field '{key}' must be a list of strings")
                raw[key] = tuple(raw[key])
        try:
            return cls(**raw)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where part tasks run: ``workers`` local processes (1: this process), an existing
    ``scheduler``, or a SLURM cluster; ``quiet`` keeps the cluster's own logs off stderr."""

    workers: int = 1
    scheduler: str | None = None
    part_slice: str | None = None
    slurm: SlurmConfig | None = None
    quiet: bool = False

    @property
    def in_process(self) -> bool:
        return self.workers == 1 and self.scheduler is None and self.slurm is None


def make_slurm_cluster(cfg: SlurmConfig, *, quiet: bool = False) -> Any:
    """A dask-jobqueue SLURMCluster (nothing is submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            "--slurm-config needs dask-jobqueue: pip install 'aamflow[cluster]'"
        ) from None
    directives = list(cfg.extra_directives)
    extra_args = []
    if cfg.gpus:
        directives.append(f"--gres=gpu:{cfg.gpus}")
        extra_args = ["--resources", f"GPU={cfg.gpus}"]
    prologue = list(cfg.job_script_prologue)
    if quiet:  # the worker's own INFO lines would fill every job's stderr
        prologue.append("export DASK_LOGGING__DISTRIBUTED=error")
    return SLURMCluster(
        cores=cfg.cores,
        processes=1,
        # no nanny: a worker told to close then exits, and so does its job, which is never
        # scancelled (SLURM ends a cancelled job's log with an error line); SLURM itself
        # enforces the job's memory
        nanny=False,
        memory=cfg.memory,
        queue=cfg.queue,
        account=cfg.account,
        walltime=cfg.walltime,
        python=cfg.python,
        log_directory=cfg.log_directory,
        job_extra_directives=directives,
        job_script_prologue=prologue,
        worker_extra_args=extra_args,
        scheduler_options={"dashboard_address": None},
        silence_logs="error" if quiet else False,
    )


def slurm_job_script(cfg: SlurmConfig) -> str:
    """The sbatch script each dask worker job would run (no SLURM needed to see it)."""
    cluster = make_slurm_cluster(cfg)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def check_cluster(cluster: ClusterConfig) -> None:
    """Refuse, before anything is written or submitted, a cluster that cannot run: a
    ``--scheduler`` that does not answer, or a SLURM without its commands, its controller
    or the config's queue."""
    if cluster.slurm is not None:
        _check_slurm(cluster.slurm)
    elif cluster.scheduler is not None:
        _check_scheduler(cluster.scheduler)


def _check_scheduler(address: str) -> None:
    from distributed import Client

    try:
        Client(address, timeout=CONNECT_TIMEOUT).close()
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(
            f"--scheduler {address}: unreachable ({one_line(e)}); start it or fix the address"
        ) from None


def _check_slurm(cfg: SlurmConfig) -> None:
    import shutil
    import subprocess

    for tool in ("sbatch", "sinfo"):
        if shutil.which(tool) is None:
            raise ConfigError(f"--slurm-config: '{tool}' is not on PATH; run on a SLURM login node")
    try:
        r = subprocess.run(
            ["sinfo", "--noheader", "--format=%R"],
            capture_output=True,
            text=True,
            timeout=3 * CONNECT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("--slurm-config: the SLURM controller did not answer sinfo") from None
    if r.returncode != 0:
        why = one_line(Exception(r.stderr or r.stdout or f"exit code {r.returncode}"))
        raise ConfigError(f"--slurm-config: SLURM is unreachable: sinfo said: {why}")
    partitions = sorted(set(r.stdout.split()))
    if cfg.queue not in partitions:
        raise ConfigError(
            f"--slurm-config: queue {cfg.queue!r} is not a partition of this cluster; "
            f"valid: {', '.join(partitions) or '(none)'}"
        )


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


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, not the machine's total, and inside
    a SLURM job no more than the job's ``--cpus-per-task`` (not every site binds CPUs)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    slurm_cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(n, int(slurm_cpus)) if slurm_cpus.isdigit() and int(slurm_cpus) > 0 else n


def auto_workers(n_tasks: int, n_units: int, serial_below: int, device: str = "cpu") -> int:
    """What ``--workers 0`` (the default) means: a LocalCluster of one process per usable
    core, at most one per task; or this process alone on an accelerator (the processes
    would share it), or when the work (``n_units`` videos) is below ``serial_below``, where
    starting the cluster costs more than it saves (benchmarks/RESULTS.md, "Scale-out")."""
    if device != "cpu" or n_units < serial_below:
        return 1
    return max(1, min(usable_cores(), n_tasks))


def run_tasks(
    fn: Callable[[P], dict[str, Any]],
    items: Sequence[P],
    cluster: ClusterConfig,
    *,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` on every item and return the results in item order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one)
    when a cluster is used. ``on_done`` is called in this process as each result arrives,
    that is once the item's part is committed.
    """
    if cluster.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {cluster.workers}")
    if not items:
        return []
    if cluster.in_process:
        results = []
        for item in items:
            res = fn(item)
            if on_done:
                on_done(res)
            results.append(res)
        return results
    return _run_distributed(fn, items, cluster, on_done)


def _run_distributed(fn, items, cluster: ClusterConfig, on_done) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster

    # importing distributed sets its logger to INFO, which reaches our root handler: a
    # LocalCluster's start was 15 lines of scheduler chatter above the progress bar
    ours = logging.getLogger("aamflow").getEffectiveLevel()
    level = logging.ERROR if cluster.quiet else max(logging.WARNING, ours)
    logging.getLogger("distributed").setLevel(ours if ours <= logging.DEBUG else level)
    resources = None
    if cluster.slurm is not None:
        local = make_slurm_cluster(cluster.slurm, quiet=cluster.quiet)
        local.scale(jobs=min(cluster.slurm.jobs, len(items)))  # no job without a task
        client = Client(local)
        if cluster.slurm.gpus:
            resources = {"GPU": 1}  # one GPU per part task
    elif cluster.scheduler:
        client = Client(cluster.scheduler, timeout=CONNECT_TIMEOUT)
        local = None
    else:
        # one thread per worker process: torch and codecs parallelise inside a task
        local = LocalCluster(
            n_workers=min(cluster.workers, len(items)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, but the scheduler's HTTP server still binds: a free port, so a
            # second cluster on the machine does not warn that :8787 is taken
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.ERROR,
        )
        client = Client(local)
    try:
        return _gather(client, fn, items, resources, on_done)
    finally:
        if cluster.slurm is not None:
            _end_slurm_jobs(client, local)
        client.close()
        if local is not None:
            local.close()


def _gather(client, fn, items, resources, on_done) -> list[dict[str, Any]]:
    """Submit every item, call ``on_done`` as each finishes; the results in item order.
    The futures die with this frame, so the workers hold no results afterwards."""
    from distributed import as_completed

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


def _end_slurm_jobs(client: Any, local: Any, timeout: float = 60.0) -> None:
    """Let the worker jobs exit on their own before the cluster is closed: closing it
    scancels them, and SLURM ends every cancelled job's log with an error line. Workers are
    told to close as they connect (a job may start after the last task); jobs still pending
    are cancelled, which writes nothing, since they never ran."""
    import subprocess
    import time

    ids = [str(job.job_id) for job in local.workers.values() if getattr(job, "job_id", None)]
    deadline = time.monotonic() + timeout
    while ids and time.monotonic() < deadline:
        r = subprocess.run(
            ["squeue", "--noheader", "--format=%i %t", f"--jobs={','.join(ids)}"],
            capture_output=True,
            text=True,
            check=False,
        )
        states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
        live = {i: st for i, st in states.items() if st in ("PD", "CF", "R", "CG")}
        if r.returncode != 0 or not live:
            return
        pending = [i for i, st in live.items() if st == "PD"]
        if pending:
            subprocess.run(["scancel", *pending], capture_output=True, check=False)
        try:
            workers = list(client.scheduler_info()["workers"])
            if workers:
                client.retire_workers(workers=workers, close_workers=True)
        except Exception:  # the cluster is being torn down anyway; scancel ends the jobs
            return
        time.sleep(0.5)
