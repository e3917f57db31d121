"""Cluster execution: part slices, and the SLURM job script (no SLURM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aamflow.pipeline.cluster import (
    SlurmConfig,
    auto_workers,
    parse_slice,
    select_slice,
    slurm_job_script,
    usable_cores,
)
from aamflow.schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_slices_cover_every_item_exactly_once() -> None:
    items = list(range(11))
    got = sorted(x for i in range(3) for x in select_slice(items, f"{i}/3"))
    assert got == items
    with pytest.raises(ConfigError, match="0 <= I < N"):
        parse_slice("3/3")
    with pytest.raises(ConfigError, match="expected I/N"):
        parse_slice("first")


def test_the_example_slurm_config_gives_a_gpu_job_script() -> None:
    pytest.importorskip("dask_jobqueue")
    cfg = SlurmConfig.from_yaml(REPO / "examples" / "slurm.yaml")
    script = slurm_job_script(cfg)
    for line in (
        "#SBATCH -p gpu",
        "#SBATCH -A my-project",
        "#SBATCH -t 04:00:00",
        "#SBATCH --gres=gpu:1",
        "--cpus-per-task=8",
        "module load cuda",
    ):
        assert line in script
    assert "--resources GPU=1" in script


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue: gpu\ngpu: 2\n", "unknown SLURM setting"),
        ("cores: 2\n", "field 'queue' is missing"),
        ("queue: gpu\njobs: 0\n", "'jobs' must be a positive integer"),
        ("queue: gpu\ncores: two\n", "'cores' must be a positive integer"),
        ("queue: gpu\nwalltime: four hours\n", "'walltime' 'four hours' does not parse"),
        ("queue: gpu\nwalltime: 4:00:00\n", "'walltime' must be quoted"),
        ("queue: gpu\nwalltime: '1-25:99'\n", "does not parse"),
        ("queue: gpu\nmemory: lots\n", "'memory' 'lots' does not parse"),
        ("queue: [a, b]\n", "'queue' must be a non-empty string"),
        ("queue: gpu\njob_script_prologue: module load cuda\n", "must be a list of strings"),
        ("- queue\n", "expected a mapping"),
        ("queue: [\n", "cannot read the SLURM config"),
    ],
)
def test_a_bad_slurm_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        SlurmConfig.from_yaml(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "walltime", ["30", "30:00", "04:00:00", "2-0", "1-12", "1-12:30", "7-00:00:00"]
)
def test_slurm_walltime_forms_parse(tmp_path: Path, walltime: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(f"queue: gpu\nwalltime: '{walltime}'\n")
    assert SlurmConfig.from_yaml(f).walltime == walltime


def test_the_default_workers_fit_the_machine_and_small_inputs_stay_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    cores = usable_cores()
    assert auto_workers(n_tasks=100, n_units=10_000, serial_below=64) == cores
    assert auto_workers(n_tasks=1, n_units=10_000, serial_below=64) == 1
    assert auto_workers(n_tasks=100, n_units=63, serial_below=64) == 1
    assert auto_workers(n_tasks=100, n_units=10_000, serial_below=64, device="cuda") == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # inside a one-CPU job
    assert usable_cores() == 1


def test_a_local_cluster_reports_each_task_as_it_finishes() -> None:
    pytest.importorskip("distributed")
    from aamflow.pipeline.cluster import ClusterConfig, run_tasks

    seen: list[dict] = []
    out = run_tasks(_square, list(range(5)), ClusterConfig(workers=2), on_done=seen.append)
    assert out == [{"n": k * k} for k in range(5)]  # item order
    assert sorted(r["n"] for r in seen) == [0, 1, 4, 9, 16]  # one call per task


def test_a_local_cluster_start_says_nothing_at_the_default_log_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("distributed")
    import logging

    from aamflow.pipeline.cluster import ClusterConfig, run_tasks

    logging.getLogger("aamflow").setLevel(logging.WARNING)  # the CLI's default
    with caplog.at_level(logging.INFO):  # what a root handler at INFO would print
        run_tasks(_square, list(range(3)), ClusterConfig(workers=2))
    chatter = [r for r in caplog.records if r.name.startswith("distributed")]
    assert not [r for r in chatter if r.levelno < logging.WARNING], chatter[:3]


def _square(k: int) -> dict:
    return {"n": k * k}
