"""train-adapter's reliability promises: a diverged run stops with the last good state and
publishes nothing; a refused resume leaves config.json alone; store paths compare resolved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.errors import CheckpointError, TrainingDiverged
from aamflow.stages.train.config import TrainConfig
from aamflow.stages.train.stage import run_train

FAST = dict(batch_size=8, quiet=True, tasks=("ar",))


def test_a_diverged_run_stops_keeps_the_last_good_state_and_publishes_nothing(
    train_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lrbig"
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch (\d+): non-finite") as err:
        run_train(TrainConfig(store=train_store, out=out, epochs=6, lr=1e6, **FAST))
    epoch = int(err.value.args[0].split("diverged in epoch ")[1].split(":")[0])
    assert not (out / "model.safetensors").exists() and not (out / "adapter.json").exists()
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epoch))  # only the good epochs
    assert all(r["loss"] is not None for r in rows)
    if epoch > 1:  # the kept state is finite: the loader would refuse a non-finite one
        state = json.loads((out / "train_state" / "state.json").read_text())
        assert state["epoch"] == epoch - 1
    # the CLI prints it as one line and exits 2
    r = CliRunner().invoke(
        cli,
        ["--quiet", "train-adapter", "--store", str(train_store), "--out", str(tmp_path / "c")]
        + ["--lr", "1e6", "--epochs", "6", "--batch-size", "8", "--tasks", "ar"],
    )
    assert r.exit_code == 2 and r.output.startswith("error: train-adapter diverged")


def test_a_non_finite_training_state_is_refused_on_resume(
    train_store: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    out = tmp_path / "a"
    run_train(TrainConfig(store=train_store, out=out, epochs=1, **FAST))
    tensors_file = out / "train_state" / "tensors.safetensors"
    tensors = load_file(str(tensors_file))
    name = next(k for k in tensors if k.startswith("aam.") and tensors[k].is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(tensors_file))
    with pytest.raises(CheckpointError, match="non-finite"):
        run_train(TrainConfig(store=train_store, out=out, epochs=2, resume=True, **FAST))


def test_a_refused_resume_leaves_config_json_alone(train_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "a"
    run_train(TrainConfig(store=train_store, out=out, epochs=1, **FAST))
    before = (out / "config.json").read_text()
    # a state that does not fit this run's model: refused after the settings check passed
    state = out / "train_state" / "state.json"
    meta = json.loads(state.read_text())
    meta["param_groups"] = meta["param_groups"][:0]
    state.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        run_train(TrainConfig(store=train_store, out=out, epochs=3, resume=True, **FAST))
    assert (out / "config.json").read_text() == before


def test_resume_compares_store_paths_resolved(
    train_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "a"
    monkeypatch.chdir(train_store.parent)
    run_train(TrainConfig(store=Path(train_store.name), out=out, epochs=1, **FAST))
    # the same store, relative to another folder, then absolute: both resume
    monkeypatch.chdir(tmp_path)
    rel = Path(os.path.relpath(train_store, tmp_path))
    assert run_train(TrainConfig(store=rel, out=out, epochs=2, resume=True, **FAST))["epochs"] == 2
    absolute = Path(os.path.abspath(train_store))
    summary = run_train(TrainConfig(store=absolute, out=out, epochs=3, resume=True, **FAST))
    assert summary["epochs"] == 3
