"""The eval stage on small fake stores: leakage ranks stores, references are checked, reports
are written and reproducible, the bias protocol reads only the bias subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.errors import ConfigError
from aamflow.schemas.fake import FAKE_SPACES, fake_store
from aamflow.schemas.manifest import Sampling
from aamflow.schemas.store import (
    VideoRecord,
    create_store,
    index_store,
    new_store_attrs,
    open_part_writer,
    plan_parts,
)
from aamflow.stages.eval.alignment import clip_frame_labels
from aamflow.stages.eval.config import EvalConfig
from aamflow.stages.eval.report import format_summary_table
from aamflow.stages.eval.stage import run_eval

FAST = {"attackers": ("linear", "knn"), "epochs": 3, "quiet": True, "utility_seeds": 2}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_stores")
    return {
        # one part per store: fewer reads, same figures
        "leaky": fake_store(root / "leaky.zarr", n_videos=40, part_size=40, leak=2.0, seed=1),
        "clean": fake_store(root / "clean.zarr", n_videos=40, part_size=40, leak=0.0, seed=1),
        "other": fake_store(root / "other.zarr", n_videos=4, encoder_name="other-encoder"),
    }


@pytest.fixture(scope="module")
def full_report(stores, tmp_path_factory) -> tuple[dict, Path]:
    """Every task, with the raw store as its own reference."""
    out = tmp_path_factory.mktemp("report")
    config = EvalConfig(store=stores["leaky"], reference=stores["leaky"], out=out, **FAST)
    return run_eval(config), out


def strongest_above_chance(entry: dict) -> float:
    best = entry["attackers"][entry["strongest"]]
    return best["cmap"] - best["chance_cmap"]


def test_a_leaky_store_leaks_more_than_a_clean_one(stores, tmp_path):
    def privacy(name: str) -> dict:
        cfg = EvalConfig(store=stores[name], tasks=("privacy",), out=tmp_path / name, **FAST)
        return run_eval(cfg)["privacy"]

    leaky, clean = privacy("leaky"), privacy("clean")
    # both sources, every attribute: static attributes from static clips, all from clips
    assert set(leaky) == {"skin_tone", "gender", "skin_tone@clips", "gender@clips"}
    assert leaky["gender"]["source"] == "static" and leaky["gender@clips"]["source"] == "clips"
    for key in leaky:
        assert strongest_above_chance(leaky[key]) > 0.3, key
        assert strongest_above_chance(leaky[key]) > strongest_above_chance(clean[key]) + 0.2, key
        assert leaky[key]["attackers"]["linear"]["accuracy"] > leaky[key]["chance"]


def test_attackers_split_by_video_and_skip_nothing_labelled(full_report):
    report, _ = full_report
    entry = report["privacy"]["skin_tone@clips"]
    # 40 videos, 60/20/20 by row: train + val videos train, test videos are scored
    assert (entry["num_train_videos"], entry["num_test_videos"]) == (32, 8)
    assert entry["num_test"] == 8 * 6  # every clip of the 8 test videos (6 per video)
    assert report["privacy"]["skin_tone"]["num_test"] == 8 * 4  # 4 static clips per video


def test_report_files_and_contents(full_report, stores):
    report, out = full_report
    for name in ("report.json", "report.md", "tradeoff.png", "leakage.png", "config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text()) == report
    config = json.loads((out / "config.json").read_text())
    assert config["reference"] == str(stores["leaky"]) and config["epochs"] == 3
    assert report["stores"]["store"]["uuid"] == report["stores"]["reference"]["uuid"]
    seeds = report["seeds"]
    assert seeds["attack"] == seeds["bias"] == 0 and seeds["utility"] == [0, 1]
    # a store compared with itself: same figures, no leakage removed, in every draw
    for entry in report["privacy"].values():
        assert entry["reduction"] == pytest.approx(0.0)
        assert entry["reduction_ci95"] == [0.0, 0.0]
        assert entry["leakage_ci95"] == entry["reference_leakage_ci95"]
        assert entry["paired_videos"] == entry["num_test_videos"]
    utility = report["utility"]
    assert set(utility) == {"ar", "tad", "ad"}
    assert utility["ar"]["top1"] == utility["ar"]["reference"]["top1"]
    assert set(utility["tad"]["map"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    assert utility["tad"]["avg"] == pytest.approx(np.mean(list(utility["tad"]["map"].values())))
    assert utility["ad"]["auc"] is None or 0.0 <= utility["ad"]["auc"] <= 1.0
    assert "bias" not in report and any("bias" in n for n in report["notes"])


def test_utility_figures_carry_their_seed_spread_and_a_paired_interval(full_report):
    report, _ = full_report
    for task, figure in (("ar", "top1"), ("tad", "avg")):
        entry = report["utility"][task]
        spread = entry["spread"]
        assert len(spread["per_seed"]) == spread["num_seeds"] == 2
        assert entry[figure] == pytest.approx(np.mean(spread["per_seed"]))
        assert spread["std"] >= 0.0
        lo, hi = spread["ci95"]
        assert 0.0 <= lo <= hi <= 1.0
        # a store against itself: every bootstrap draw sees the same figure on both sides
        change = entry["change"]
        assert change["mean"] == 0.0 and change["ci95"] == [0.0, 0.0]
        assert change["paired_videos"] == entry["num_test_videos"]


def test_the_summary_leads_with_the_worst_attribute(full_report):
    report, _ = full_report
    worst = report["headline"]["worst"]
    static = [e for k, e in report["privacy"].items() if e["attribute"] in ("skin_tone", "gender")]
    assert worst["reduction"] == min(e["reduction"] for e in static)
    assert (
        format_summary_table(report)
        .splitlines()[0]
        .startswith(f"worst attribute: {worst['attribute']} on ")
    )


def test_repeated_runs_give_identical_figures(full_report, stores, tmp_path):
    first, _ = full_report
    config = EvalConfig(store=stores["leaky"], reference=stores["leaky"], out=tmp_path, **FAST)
    assert run_eval(config) == first


def test_a_reference_from_another_encoder_is_refused(stores, tmp_path):
    out = tmp_path / "report"
    args = ["eval", "--store", str(stores["leaky"]), "--reference", str(stores["other"])]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], obj={})
    assert result.exit_code == 2, result.output
    assert "encoder" in result.output
    assert not out.exists()  # refused before writing anything


def test_unknown_tasks_and_attackers_name_the_valid_ones(stores):
    with pytest.raises(ConfigError, match="valid: privacy, ar, tad, ad, bias"):
        EvalConfig.from_cli(
            quiet=True,
            store=stores["leaky"],
            reference=None,
            tasks="privacy,speed",
            attackers="linear",
            out=Path("r"),
            seed=0,
            epochs=None,
        )
    with pytest.raises(ConfigError, match="knn"):
        EvalConfig(store=stores["leaky"], attackers="linear,svm")
    config = EvalConfig.from_cli(
        quiet=True,
        store=stores["leaky"],
        reference=None,
        tasks=" ar, tad ",
        attackers="knn",
        out=Path("r"),
        seed=3,
        epochs=2,
    )
    assert config.tasks == ("ar", "tad") and config.attackers == ("knn",)


def _bias_store(path: Path, n_main: int = 20, n_bias: int = 40, dim: int = 16) -> Path:
    """AR videos of subset main, plus a bias subset whose train split is skewed by group."""
    rng = np.random.default_rng(0)
    n = n_main + n_bias
    plan = plan_parts(n, 30)
    encoder = {"name": "fake", "dim": dim, "weights_digest": "sha256:fake"}
    attrs = new_store_attrs(
        encoder=encoder, sampling=Sampling(), label_spaces=FAKE_SPACES, plan=plan
    )
    create_store(path, attrs)
    action_dirs = 3.0 * rng.normal(size=(4, dim))
    group_dirs = 3.0 * rng.normal(size=(2, dim))
    for part in plan:
        with open_part_writer(path, part) as writer:
            for row in range(part.start, part.stop):
                bias = row >= n_main
                k = (row - n_main) if bias else row
                split = (
                    "train" if k < (0.5 if bias else 0.6) * (n_bias if bias else n_main) else "test"
                )
                action, group = int(rng.integers(4)), int(rng.integers(2))
                if bias and split == "train":
                    group = action % 2  # the shortcut: group predicts the action in training
                x = rng.normal(size=(3, dim)) + action_dirs[action] + group_dirs[group]
                writer.add(
                    VideoRecord(
                        row=row,
                        id=f"{'bias' if bias else 'ar'}_{row:03d}",
                        path=f"v/{row}.mp4",
                        split=split,
                        task="ar",
                        subset="bias" if bias else "main",
                        num_frames=48,
                        fps=16.0,
                        labels={
                            "label_action": action,
                            "label_group": group,
                            "label_attr_gender": group,
                            "label_attr_skin_tone": int(rng.integers(3)),
                        },
                        clip_features=x.astype(np.float32),
                        clip_frames=np.array([[0, 16], [16, 32], [32, 48]]),
                        clip_time=np.array([[0, 1], [1, 2], [2, 3]], dtype=float),
                        clip_frame_idx=np.arange(48).reshape(3, 16),
                        static_features=x[:2].astype(np.float32),
                        static_frame=np.array([10, 30]),
                    )
                )
            writer.commit()
    index_store(path)
    return path


def test_bias_protocol_reads_only_the_bias_subset(tmp_path):
    store = _bias_store(tmp_path / "bias.zarr")
    report = run_eval(
        EvalConfig(store=store, tasks=("privacy", "ar", "bias"), out=tmp_path / "r", **FAST)
    )
    bias = report["bias"]
    assert set(bias["per_group"]) == {"f", "m"}
    values = list(bias["per_group"].values())
    assert bias["gap"] == pytest.approx(max(values) - min(values))
    assert (bias["num_train_videos"], bias["num_test_videos"]) == (20, 20)
    assert bias["reference"] is None
    # main-subset measurements never see bias videos
    assert (
        report["utility"]["ar"]["num_train_videos"] + report["utility"]["ar"]["num_test_videos"]
        == 20
    )
    gender = report["privacy"]["gender"]
    assert gender["num_train_videos"] + gender["num_test_videos"] == 20


def test_clip_frame_labels_follow_the_frames_each_dense_clip_covers():
    labels = np.zeros(40, np.int8)
    labels[20:30] = 1
    starts = np.arange(0, 40 - 16 + 1, 4)  # dense clips: 16 frames every 4 frames
    idx = starts[:, None] + np.arange(16)[None, :]
    gt = clip_frame_labels(labels, idx, 16).reshape(len(starts), 16)
    assert gt.shape == (7, 16)
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(gt[i], labels[s : s + 16])
    # 16 labels per clip from 8-frame clips: evenly picked frames, each taken twice
    short = clip_frame_labels(labels, idx[:, ::2], 16).reshape(7, 16)
    np.testing.assert_array_equal(short[:, ::2], labels[idx[:, ::2]])
    # unknown frames count as normal, frames past the end take the last label
    assert clip_frame_labels(np.array([-1, 1]), np.array([[0, 1, 5]]), 3).tolist() == [0, 1, 1]
    assert clip_frame_labels(np.zeros(0), idx[:2], 16, video_label=1).sum() == 32
