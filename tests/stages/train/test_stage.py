"""train-adapter end to end on a tiny fake store: it learns, writes a checkpoint that
anonymize can load, resumes exactly, is reproducible, streams, and refuses bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.checkpoint import check_compatible, default_adapter_dir, load_checkpoint
from aamflow.schemas.errors import ConfigError
from aamflow.schemas.store import open_store
from aamflow.stages.models.aam import build_aam, is_identity
from aamflow.stages.train.config import TrainConfig
from aamflow.stages.train.stage import LOSS_NAMES, run_train

FAST = dict(batch_size=8, quiet=True)


def losses(out: Path) -> list[dict[str, float]]:
    """The loss and val columns of a run's log (timings left out)."""
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k in LOSS_NAMES or k.startswith("val_")} for r in rows]


def test_short_run_lowers_the_objective_and_writes_a_loadable_adapter(
    train_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    summary = run_train(
        TrainConfig(store=train_store, out=out, epochs=20, lr=1e-3, val_every=10, **FAST)
    )
    log = losses(out)
    assert len(log) == 20 and summary["tasks"] == ["ar", "tad", "ad"]
    assert log[-1]["loss"] < log[0]["loss"] - 1.0
    assert log[-1]["l_t"] < log[0]["l_t"]
    for key in ("val_ar_top1", "val_tad_map", "val_ad_auc", "val_l_b", "val_reid_top1"):
        assert key in log[-1]
    for name in ("config.json", "curves.png", "heads.json", "train_state"):
        assert (out / name).exists(), name

    state, meta, heads = load_checkpoint(out)
    store = open_store(train_store)
    check_compatible(meta, store.encoder, store.feature_dim, str(out))
    assert meta.train_store_uuid == store.uuid and meta.epochs == 20 and meta.seed == 0
    assert meta.loss_weights == {"lc": 100.0, "t": 1.0, "b": 0.0} and meta.recipe == "default"
    # the default video eraser: its rank was chosen from the data, and the curve is kept
    assert meta.eraser["kind"] == "video" and meta.eraser["rank"] == meta.hparams.get(
        "erase_rank", 0
    )
    assert meta.eraser["curve"][0]["rank"] == 0 and "rule" in meta.eraser
    # a rule that chose rank 0 removed nothing, and the adapter says so
    assert ("warning" in meta.eraser) == (meta.eraser["rank"] == 0)
    assert meta.tasks == ["ar", "tad", "ad"] and not meta.batch_dependent
    assert meta.metrics["loss"] == pytest.approx(log[-1]["loss"])
    module = build_aam(meta.arch, meta.input_dim, **meta.hparams)
    module.load_state_dict(state)
    assert not is_identity(module)
    assert {k.split(".")[0] for k in heads} == {"ar", "tad", "ad"}
    assert heads["ar.weight"].shape == (4, 32)


def test_the_cross_covariance_objective_lowers_what_a_videos_static_clips_share(
    train_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    run_train(
        TrainConfig(
            store=train_store,
            out=out,
            epochs=15,
            lr=1e-3,
            w_lc=10.0,
            w_b=100.0,
            privacy_loss="xcov",
            val_every=15,
            **FAST,
        )
    )
    log = losses(out)
    # L_B = -(shared covariance / latent variance): maximising it drives it up toward 0
    assert log[0]["l_b"] < 0 and log[-1]["l_b"] > 0.5 * log[0]["l_b"]
    _, meta, _ = load_checkpoint(out)
    assert meta.privacy_loss == "xcov" and meta.loss_weights["b"] == 100.0


@pytest.mark.parametrize("eraser", ["static", "video"])
def test_erase_rank_fits_an_eraser_that_the_checkpoint_rebuilds(
    train_store: Path, tmp_path: Path, eraser: str
) -> None:
    out = tmp_path / "adapter"
    opts = dict(epochs=2, eraser=eraser, erase_rank=4, **FAST)
    run_train(TrainConfig(store=train_store, out=out, **opts))
    state, meta, _ = load_checkpoint(out)
    assert meta.hparams["erase_rank"] == 4 and meta.hparams["eraser"] == eraser
    module = build_aam(meta.arch, meta.input_dim, **meta.hparams)
    module.load_state_dict(state)
    basis, span = module.eraser.basis, module.eraser.span
    if eraser == "static":  # orthonormal, removed as it is read
        assert torch.allclose(basis.T @ basis, torch.eye(4), atol=1e-4) and torch.equal(basis, span)
    else:  # oblique: the removed directions are read back exactly (a projection)
        assert torch.allclose(basis.T @ span, torch.eye(4), atol=1e-3)
    # the fitted eraser is part of the training state: a resumed run ends identical
    resumed = tmp_path / "resumed"
    run_train(TrainConfig(store=train_store, out=resumed, **{**opts, "epochs": 1}))
    run_train(TrainConfig(store=train_store, out=resumed, resume=True, **opts))
    again, _, _ = load_checkpoint(resumed)
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_a_chosen_rank_survives_a_resume(train_store: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_train(TrainConfig(store=train_store, out=a, epochs=1, **FAST))
    run_train(TrainConfig(store=train_store, out=a, epochs=2, resume=True, **FAST))
    run_train(TrainConfig(store=train_store, out=b, epochs=2, **FAST))
    (sa, ma, _), (sb, mb, _) = load_checkpoint(a), load_checkpoint(b)
    assert ma.eraser == mb.eraser and all(torch.equal(sa[k], sb[k]) for k in sb)


def test_resume_continues_exactly_where_it_stopped(train_store: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_train(TrainConfig(store=train_store, out=a, epochs=2, **FAST))
    run_train(TrainConfig(store=train_store, out=a, epochs=4, resume=True, **FAST))
    run_train(TrainConfig(store=train_store, out=b, epochs=4, **FAST))
    assert losses(a) == losses(b) and len(losses(a)) == 4
    state_a, _, heads_a = load_checkpoint(a)
    state_b, _, heads_b = load_checkpoint(b)
    for k in state_b:
        assert torch.equal(state_a[k], state_b[k]), k
    for k in heads_b:
        assert torch.equal(heads_a[k], heads_b[k]), k


def test_same_seed_gives_the_same_log_and_another_seed_does_not(
    train_store: Path, tmp_path: Path
) -> None:
    run = {}
    for name, seed in (("x", 7), ("y", 7), ("z", 8)):
        run_train(TrainConfig(store=train_store, out=tmp_path / name, epochs=2, seed=seed, **FAST))
        run[name] = losses(tmp_path / name)
    assert run["x"] == run["y"]
    assert run["x"] != run["z"]


def test_streaming_trains_when_latents_exceed_the_budget(train_store: Path, tmp_path: Path) -> None:
    # ~8 KB of latents per part: a 10 KB budget streams chunks of one part (half the budget)
    cfg = TrainConfig(store=train_store, out=tmp_path / "s", epochs=2, memory_budget=10_000, **FAST)
    summary = run_train(cfg)
    assert summary["placement"] == "streaming"
    assert len(losses(tmp_path / "s")) == 2
    run_train(replace(cfg, out=tmp_path / "t"))
    assert losses(tmp_path / "t") == losses(tmp_path / "s")  # seeded part order


def test_an_existing_run_is_not_overwritten_and_resume_checks_settings(
    train_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_train(TrainConfig(store=train_store, out=out, epochs=1, tasks=("ar",), **FAST))
    with pytest.raises(ConfigError, match="--resume"):
        run_train(TrainConfig(store=train_store, out=out, epochs=2, tasks=("ar",), **FAST))
    with pytest.raises(ConfigError, match="lr"):
        run_train(
            TrainConfig(
                store=train_store, out=out, epochs=2, tasks=("ar",), lr=1.0, resume=True, **FAST
            )
        )
    # a finished run resumed with the same epochs trains nothing and republishes
    summary = run_train(
        TrainConfig(store=train_store, out=out, epochs=1, tasks=("ar",), resume=True, **FAST)
    )
    assert summary["epochs"] == 1 and summary["tasks"] == ["ar"]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["--quiet", "train-adapter", *args], obj={})


def test_cli_trains_into_the_default_adapter_dir(ar_only_store: Path) -> None:
    r = invoke("--store", str(ar_only_store), "--epochs", "1", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    _, meta, _ = load_checkpoint(default_adapter_dir(ar_only_store))
    assert meta.tasks == ["ar"]  # the default: every task the store has labels for


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "nope"], "unknown AAM architecture"),
        (["--tasks", "ar,pose"], "unknown task 'pose'"),
        (["--tasks", "tad"], "no training labels"),
        (["--tasks", "ad"], "no training labels"),
        (["--memory-budget", "lots"], "--memory-budget"),
        (["--epochs", "-3"], "--epochs"),
    ],
)
def test_cli_bad_config_exits_2_and_writes_nothing(
    ar_only_store: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "never"
    r = invoke("--store", str(ar_only_store), "--out", str(out), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not out.exists()
