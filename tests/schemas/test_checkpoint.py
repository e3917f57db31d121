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


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("input_dim", "abc", "field 'input_dim': expected an integer"),
        ("input_dim", 10**12, "field 'input_dim'"),
        ("hparams", [1, 2], "field 'hparams': expected a mapping"),
        ("hparams", {"depth": {"deep": 1}}, "field 'hparams'"),
        ("loss_weights", {"lc": "x"}, "field 'loss_weights'"),
        ("encoder", "builtin", "field 'encoder'"),
        ("tasks", "ar", "field 'tasks'"),
        ("epochs", True, "field 'epochs'"),
    ],
)
def test_wrong_types_in_adapter_json_are_refused_by_name(
    tmp_path: Path, field: str, value, fragment: str
) -> None:
    import json

    out = save_checkpoint(tmp_path / "a", {"w": torch.zeros(2)}, meta())
    doc = json.loads((out / "adapter.json").read_text())
    doc[field] = value
    (out / "adapter.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(out)


@pytest.mark.parametrize("digest", ["", "   ", "sha256:", "md5:abc", None])
def test_a_blank_or_malformed_digest_does_not_turn_verification_off(tmp_path: Path, digest) -> None:
    import json

    from safetensors.torch import save_file

    out = save_checkpoint(tmp_path / "a", {"w": torch.zeros(4)}, meta())
    doc = json.loads((out / "adapter.json").read_text())
    doc["weights_digest"] = digest
    (out / "adapter.json").write_text(json.dumps(doc))
    save_file({"w": torch.full((4,), 7.0)}, str(out / "model.safetensors"))  # swapped weights
    with pytest.raises(CheckpointError, match="weights_digest"):
        load_checkpoint(out)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    w = torch.randn(8)
    w[3] = bad
    out = save_checkpoint(tmp_path / "a", {"ok": torch.zeros(2), "w": w}, meta())
    with pytest.raises(CheckpointError, match="non-finite weights in w"):
        load_checkpoint(out)
    heads = save_checkpoint(tmp_path / "b", {"ok": torch.zeros(2)}, meta(), heads={"ar.w": w})
    with pytest.raises(CheckpointError, match="heads.safetensors: non-finite"):
        load_checkpoint(heads)
