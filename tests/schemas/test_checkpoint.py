"""Adapter checkpoints: round trip, digest check, and refusal of anything that unpickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from aamflow.schemas.checkpoint import (
    AdapterMetadata,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from aamflow.schemas.errors import CheckpointError


def meta(**kw) -> AdapterMetadata:
    base = dict(
        arch="residual_mlp",
        hparams={"depth": 2},
        input_dim=8,
        encoder={"name": "builtin", "weights_digest": "sha256:abc", "dim": 8},
        train_store_uuid="u-1",
        loss_weights={"lc": 100.0, "t": 1.0, "b": 1.0},
        metrics={"loss": 0.5},
    )
    base.update(kw)
    return AdapterMetadata(**base)


def test_round_trip(tmp_path: Path) -> None:
    state = {"w": torch.randn(8, 8), "b": torch.zeros(8)}
    out = save_checkpoint(
        tmp_path / "adapter", state, meta(), heads={"ar.weight": torch.ones(3, 8)}
    )
    loaded, m, heads = load_checkpoint(out)
    assert torch.equal(loaded["w"], state["w"])
    assert m.arch == "residual_mlp" and m.metrics == {"loss": 0.5}
    assert m.weights_digest.startswith("sha256:")
    assert torch.equal(heads["ar.weight"], torch.ones(3, 8))


def test_overwrite_is_atomic_and_complete(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a", {"w": torch.zeros(2)}, meta())
    save_checkpoint(tmp_path / "a", {"w": torch.ones(2)}, meta())
    assert torch.equal(load_checkpoint(tmp_path / "a")[0]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


class Boom:
    def __reduce__(self):
        return (Path("/tmp/aamflow-pwned").touch, ())


def test_a_pickle_payload_is_refused_without_running(tmp_path: Path) -> None:
    out = save_checkpoint(tmp_path / "a", {"w": torch.zeros(2)}, meta(weights_digest=""))
    (out / "model.safetensors").unlink()
    with open(out / "model.pt", "wb") as fh:
        pickle.dump({"w": Boom()}, fh)
    marker = Path("/tmp/aamflow-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(out)
    assert not marker.exists()


def test_truncated_weights_and_tampering_are_refused(tmp_path: Path) -> None:
    out = save_checkpoint(tmp_path / "a", {"w": torch.randn(64)}, meta())
    w = out / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(out)
    from safetensors.torch import save_file

    save_file({"w": torch.randn(64)}, str(w))
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_checkpoint(out)


def test_missing_and_foreign_metadata(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no adapter checkpoint"):
        load_checkpoint(tmp_path / "nope")
    out = save_checkpoint(tmp_path / "a", {"w": torch.zeros(2)}, meta())
    (out / "adapter.json").write_text('{"schema": "something-else"}')
    with pytest.raises(CheckpointError, match="not an aamflow adapter"):
        load_checkpoint(out)


def test_compatibility_checks() -> None:
    m = meta()
    check_compatible(m, {"name": "builtin", "weights_digest": "sha256:abc"}, 8, "s")
    with pytest.raises(CheckpointError, match="expects 8-d features, store has 16-d"):
        check_compatible(m, {"name": "builtin", "weights_digest": "sha256:abc"}, 16, "s")
    with pytest.raises(CheckpointError, match="encoder name 'builtin'"):
        check_compatible(m, {"name": "videomae", "weights_digest": "sha256:abc"}, 8, "s")
