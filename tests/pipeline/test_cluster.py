"""Cluster execution: part slices, and the SLURM job script (no SLURM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aamflow.pipeline.cluster import SlurmConfig, parse_slice, select_slice, slurm_job_script
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


def test_a_bad_slurm_config_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("queue: gpu\ngpu: 2\n")
    with pytest.raises(ConfigError, match="unknown SLURM setting"):
        SlurmConfig.from_yaml(bad)
    bad.write_text("jobs: 0\n")
    with pytest.raises(ConfigError, match="'jobs' must be a positive integer"):
        SlurmConfig.from_yaml(bad)
