"""TrainConfig: validated on construction, parsed from CLI text, round-trips through JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aamflow.schemas.errors import ConfigError
from aamflow.stages.train.config import TrainConfig, parse_bytes, parse_tasks


def test_defaults_are_the_video_eraser_and_the_paper_is_a_recipe() -> None:
    c = TrainConfig(store=Path("s.zarr"))
    assert (c.eraser, c.erase_rank, c.w_b, c.recipe) == ("video", None, 0.0, "default")
    assert (c.w_lc, c.w_t, c.lr, c.batch_size, c.epochs) == (100.0, 1.0, 1e-4, 512, 100)
    assert c.arch == "token_attention" and c.temperature == 0.1 and c.tasks is None
    paper = TrainConfig.from_cli(store=Path("s.zarr"), recipe="paper")
    assert (paper.eraser, paper.w_b, paper.privacy_loss, paper.w_lc) == (
        "none",
        1.0,
        "ntxent",
        100.0,
    )
    assert paper.recipe == "paper" and paper.to_dict()["recipe"] == "paper"


def test_flags_given_override_the_recipe_and_flags_left_out_keep_it() -> None:
    c = TrainConfig.from_cli(store=Path("s.zarr"), recipe="paper", w_b=2.0, lr=None, epochs=None)
    assert (c.w_b, c.lr, c.eraser) == (2.0, 1e-4, "none")
    s = TrainConfig.from_cli(store=Path("s.zarr"), recipe="static-eraser", erase_rank=None)
    assert (s.eraser, s.erase_rank) == ("static", 350)
    with pytest.raises(ConfigError, match="--recipe 'fast'"):
        TrainConfig.from_cli(store=Path("s.zarr"), recipe="fast")


def test_the_cli_recipe_choices_are_the_recipes() -> None:
    from aamflow.pipeline.cli import TRAIN_RECIPES
    from aamflow.stages.train.config import RECIPES

    assert tuple(RECIPES) == TRAIN_RECIPES


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eraser": "static"}, "--eraser static needs --erase-rank"),
        ({"eraser": "none", "erase_rank": 4}, "pick one"),
        ({"eraser": "leace"}, "--eraser 'leace'"),
        ({"erase_rank": -2}, "--erase-rank"),
    ],
)
def test_eraser_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(store=Path("s.zarr"), **options)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", -1, "--epochs"),
        ("epochs", 0, "--epochs"),
        ("batch_size", 1, "--batch-size"),
        ("lr", 0.0, "--lr"),
        ("w_b", -1.0, "--w-b"),
        ("arch", "transformer9000", "unknown AAM architecture"),
        ("tasks", ("ar", "pose"), "unknown task 'pose'"),
        ("precision", "fp8", "--precision"),
        ("privacy_loss", "mine", "--privacy-loss 'mine': valid: ntxent, xcov"),
        ("device", "gpu", "--device"),
        ("val_every", 0, "--val-every"),
        ("seed", -1, "--seed"),
    ],
)
def test_bad_values_raise_config_error_naming_the_option(field, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(store=Path("s.zarr"), **{field: value})


def test_unknown_arch_error_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="token_attention"):
        TrainConfig(store=Path("s.zarr"), arch="nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4 * 10**9), ("512MB", 512 * 10**6), ("2GiB", 2 * 2**30), ("0", 0), ("1.5 kb", 1500)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "4XB", "-1GB", ""])
def test_parse_bytes_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match="--memory-budget"):
        parse_bytes(text)


def test_parse_tasks() -> None:
    assert parse_tasks(None) is None
    assert parse_tasks("AR, tad,ar") == ("ar", "tad")
    assert parse_tasks("none") == ()


def test_from_cli_and_json_round_trip() -> None:
    c = TrainConfig.from_cli(store=Path("s.zarr"), tasks="ar,ad", memory_budget="1GB", epochs=3)
    assert c.tasks == ("ar", "ad") and c.memory_budget == 10**9
    again = TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    with pytest.raises(ConfigError, match="unknown fields"):
        TrainConfig.from_dict({**c.to_dict(), "learning_rate": 1})
