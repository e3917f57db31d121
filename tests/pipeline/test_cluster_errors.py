"""A cluster that cannot run is one ``error:`` line and exit 2 before anything is written or
submitted: an invalid SLURM config, SLURM missing, an unreachable scheduler."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from aamflow.pipeline import cluster
from aamflow.pipeline.cli import cli
from aamflow.schemas.fake import fake_store
from tests.stages.anonymize.test_anonymize import make_adapter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = fake_store(tmp_path_factory.mktemp("raw") / "f.zarr", n_videos=6, part_size=2)
    make_adapter(p)
    return p


def commands(tiny_corpus: Path, raw: Path, out: Path) -> dict[str, list[str]]:
    return {
        "extract": ["extract", "--manifest", str(tiny_corpus), "--out", str(out / "x.zarr")],
        "anonymize": ["anonymize", "--store", str(raw), "--out", str(out / "a.zarr")],
    }


def refused(args: list[str], out: Path) -> str:
    r = CliRunner().invoke(cli, ["--quiet", *args])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert not any(out.iterdir()), "something was written"
    return lines[0]


@pytest.mark.parametrize("verb", ["extract", "anonymize"])
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue: debug\nqueues: 2\n", "unknown SLURM setting"),
        ("cores: 1\n", "'queue' is missing"),
        ("queue: debug\nwalltime: soon\n", "'walltime' 'soon' does not parse"),
    ],
)
def test_an_invalid_slurm_config_is_refused_before_anything_runs(
    tiny_corpus: Path, raw: Path, tmp_path: Path, verb: str, text: str, message: str
) -> None:
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    line = refused([*commands(tiny_corpus, raw, out)[verb], "--slurm-config", str(cfg)], out)
    assert message in line and str(cfg) in line


@pytest.mark.parametrize("verb", ["extract", "anonymize"])
def test_slurm_commands_missing_is_one_line(
    tiny_corpus: Path, raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    pytest.importorskip("dask_jobqueue")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("queue: debug\ngpus: 0\n")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch, no sinfo
    line = refused([*commands(tiny_corpus, raw, out)[verb], "--slurm-config", str(cfg)], out)
    assert "'sbatch' is not on PATH" in line


@pytest.mark.parametrize("verb", ["extract", "anonymize"])
def test_an_unreachable_scheduler_is_one_line(
    tiny_corpus: Path, raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "out"
    out.mkdir()
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    line = refused([*commands(tiny_corpus, raw, out)[verb], "--scheduler", address], out)
    assert f"--scheduler {address}: unreachable" in line
