"""SIGKILL at several points, then re-run: the result equals an uninterrupted run's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aamflow.schemas.checkpoint import load_checkpoint
from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import open_store
from tests.stages.anonymize.test_anonymize import feature_bytes, make_adapter

CLI = [sys.executable, "-m", "aamflow.pipeline", "--quiet"]


def kill_when(cmd: list[str], ready, timeout: float = 120) -> bool:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds; False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not finished


def reached(parts: Path, point: str) -> bool:
    """Has a run writing into ``parts`` reached ``point``: "staging" (a part is being
    written) or "N part(s)" (N parts committed)?"""
    try:
        names = [p.name for p in parts.iterdir()]
    except FileNotFoundError:  # not created yet, or being created
        return False
    if point == "staging":
        return any(n.startswith(".tmp-") for n in names)
    return sum(n.startswith("part-") for n in names) >= int(point.split()[0])


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = fake_store(tmp_path_factory.mktemp("raw") / "f.zarr", n_videos=40, dim=64, part_size=5)
    make_adapter(p)
    return p


@pytest.mark.parametrize("point", ["staging", "1 part", "4 parts"])
def test_anonymize_killed_then_resumed(raw: Path, tmp_path: Path, point: str) -> None:
    ref = tmp_path / "ref.zarr"
    subprocess.run([*CLI, "anonymize", "--store", str(raw), "--out", str(ref)], check=True)
    out = tmp_path / "k.zarr"
    parts = out / "parts"

    killed = kill_when(
        [*CLI, "anonymize", "--store", str(raw), "--out", str(out)], lambda: reached(parts, point)
    )
    assert killed, "the run finished before the kill point"
    r = subprocess.run(
        [*CLI, "anonymize", "--store", str(raw), "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert feature_bytes(out) == feature_bytes(ref)
    s = open_store(out)
    assert s.validate(deep=True) == [] and len(s) == 40
    assert not any(p.name.startswith((".tmp-", ".lock-")) for p in parts.iterdir())


def test_train_killed_mid_run_then_resumed_matches_a_straight_run(
    raw: Path, tmp_path: Path
) -> None:
    args = [
        "train-adapter",
        "--store",
        str(raw),
        "--epochs",
        "12",
        "--batch-size",
        "8",
        "--tasks",
        "ar",
    ]
    straight = tmp_path / "straight"
    subprocess.run([*CLI, *args, "--out", str(straight)], check=True)
    out = tmp_path / "killed"
    log = out / "train_log.jsonl"

    def after_three_epochs() -> bool:
        return log.is_file() and len(log.read_text().splitlines()) >= 3

    assert kill_when([*CLI, *args, "--out", str(out)], after_three_epochs)
    r = subprocess.run([*CLI, *args, "--out", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = load_checkpoint(straight)[0], load_checkpoint(out)[0]
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
