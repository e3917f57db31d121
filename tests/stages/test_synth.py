"""The synthetic benchmark: a valid manifest, labels that fit the videos, real H.264 files,
attributes independent of the action (except the bias split), determinism per seed."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.manifest import load_manifest
from aamflow.stages.synth import SynthConfig, run_synth
from aamflow.stages.synth.plan import Episode, make_plan
from aamflow.stages.synth.presets import (
    ACTIONS,
    ATTRIBUTES,
    BIAS_MAJORITY,
    BIAS_SHORTCUT_CLASS,
    PRESETS,
)
from aamflow.stages.synth.render import render_video


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return run_synth(SynthConfig(out=out, preset="tiny", seed=0, quiet=True))


def decode(path: Path) -> tuple[np.ndarray, float, str]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)])
        return frames, float(stream.average_rate), stream.codec_context.name


def test_manifest_validates_and_covers_every_task(tiny: Path) -> None:
    m = load_manifest(tiny)
    assert m.label_spaces.actions == ACTIONS
    assert set(m.label_spaces.attributes) == set(ATTRIBUTES)
    assert m.label_spaces.temporal_attributes == {"gait": ("normal", "limp")}
    assert m.sampling.clip_len == 16 and m.sampling.input_size == 112
    kinds = Counter((v.task, v.subset, v.split) for v in m.videos)
    assert kinds[("ar", "main", "train")] and kinds[("ar", "main", "test")]
    assert kinds[("ar", "main", "val")]
    assert kinds[("tad", "main", "train")] and kinds[("tad", "main", "test")]
    assert kinds[("ad", "main", "train")] and kinds[("ad", "main", "test")]
    assert kinds[("ar", "bias", "train")] and kinds[("ar", "bias", "test")]
    for v in m.videos:
        assert set(v.attributes) == {*ATTRIBUTES, "gait"}
        assert (v.action is not None) == (v.task == "ar")
        assert (v.group is not None) == (v.subset == "bias")


def test_segments_and_anomalies_lie_inside_their_videos(tiny: Path) -> None:
    m = load_manifest(tiny)
    for v in m.videos:
        end = v.num_frames / v.fps
        assert v.duration == pytest.approx(end)
        for s in (*v.segments, *v.anomaly_segments):
            assert 0 <= s.start < s.end <= end + 1e-9
            # boundaries fall on frames
            assert s.start * v.fps == pytest.approx(round(s.start * v.fps))
    for v in (v for v in m.videos if v.task == "tad"):
        assert v.segments and all(s.label in ACTIONS for s in v.segments)
        ends = [(s.start, s.end) for s in v.segments]
        assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:], strict=False))  # ordered
    ad = [v for v in m.videos if v.task == "ad"]
    for split in ("train", "test"):
        assert {v.anomaly for v in ad if v.split == split} == {0, 1}
    for v in ad:
        assert bool(v.anomaly_segments) == bool(v.anomaly)


def test_videos_are_h264_with_the_declared_frames_fps_and_size(tiny: Path) -> None:
    m = load_manifest(tiny)
    for v in m.videos:
        frames, fps, codec = decode(v.abspath(m))
        assert frames.shape == (v.num_frames, m.sampling.input_size, m.sampling.input_size, 3)
        assert fps == v.fps and codec == "h264"
        assert frames.std() > 5  # not blank


def test_same_seed_gives_the_same_corpus(tiny: Path, tmp_path: Path) -> None:
    again = run_synth(SynthConfig(out=tmp_path / "c", preset="tiny", seed=0, quiet=True, workers=2))
    assert again.read_bytes() == tiny.read_bytes()
    m = load_manifest(tiny)
    for task in ("ar", "tad", "ad"):
        v = next(v for v in m.videos if v.task == task)
        np.testing.assert_array_equal(
            decode(v.abspath(m))[0], decode(again.parent / v.path)[0], err_msg=v.id
        )
    other = make_plan(PRESETS["tiny"], 1)
    assert [p.to_entry() for p in other] != [p.to_entry() for p in make_plan(PRESETS["tiny"], 0)]


def test_rerun_into_the_same_folder_is_allowed(tiny: Path) -> None:
    before = tiny.read_bytes()
    assert run_synth(SynthConfig(out=tiny.parent, preset="tiny", seed=0, quiet=True)) == tiny
    assert tiny.read_bytes() == before
    assert not list(tiny.parent.rglob("*.part"))  # no temporary files left behind


def test_refuses_a_folder_holding_another_corpus_or_other_files(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="different corpus"):
        run_synth(SynthConfig(out=tiny.parent, preset="tiny", seed=1, quiet=True))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        run_synth(SynthConfig(out=tmp_path, preset="tiny", quiet=True))


def test_unknown_preset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid: tiny, demo, bench"):
        run_synth(SynthConfig(out=tmp_path / "x", preset="huge"))
    assert not (tmp_path / "x").exists()


def _contingency(plans, attribute: str) -> np.ndarray:
    values = ATTRIBUTES.get(attribute, ("normal", "limp"))
    table = np.zeros((len(ACTIONS), len(values)))
    for p in plans:
        table[ACTIONS.index(p.action), values.index(p.attributes[attribute])] += 1
    return table


def _independence_p(table: np.ndarray) -> float:
    try:
        from scipy.stats import chi2_contingency
    except ImportError:  # count-table check: every cell near its expected count
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        return 1.0 if np.abs(table - expected).max() < 4 * np.sqrt(expected.max()) else 0.0
    return float(chi2_contingency(table).pvalue)


def test_attributes_are_independent_of_action_outside_the_bias_split() -> None:
    plans = [p for p in make_plan(PRESETS["demo"], 0) if p.task == "ar"]
    main = [p for p in plans if p.subset == "main"]
    assert len(main) >= 300
    for attribute in (*ATTRIBUTES, "gait"):
        assert _independence_p(_contingency(main, attribute)) > 0.01, attribute
    # the same check does see the dependence built into the bias split
    bias_train = [p for p in plans if p.subset == "bias" and p.split == "train"]
    assert _independence_p(_contingency(bias_train, "gender")) < 1e-6


def test_bias_split_is_skewed_95_5_per_class_with_the_shortcut_class_inverted() -> None:
    plans = [p for p in make_plan(PRESETS["demo"], 0) if p.subset == "bias"]
    minority = next(g for g in ("f", "m") if g != BIAS_MAJORITY)
    for action in ACTIONS:
        train = Counter(p.group for p in plans if p.action == action and p.split == "train")
        major = minority if action == BIAS_SHORTCUT_CLASS else BIAS_MAJORITY
        assert train[major] / sum(train.values()) == pytest.approx(0.95), action
        test = Counter(p.group for p in plans if p.action == action and p.split == "test")
        assert test["f"] == test["m"] > 0, action
    assert all(p.group == p.attributes["gender"] for p in plans)


def _actor_x(frames: np.ndarray) -> np.ndarray:
    """Per-frame horizontal centre of what differs from the temporal median (the actor)."""
    moving = np.abs(frames.astype(np.float32) - np.median(frames, 0)).sum(-1) > 60
    cols = moving.sum(1)
    return (cols * np.arange(frames.shape[2])).sum(1) / np.maximum(cols.sum(1), 1)


@pytest.mark.parametrize("direction", ["walk_left", "walk_right"])
def test_walks_move_the_actor_the_labelled_way(direction: str) -> None:
    plan = next(p for p in make_plan(PRESETS["demo"], 0) if p.action == direction)
    frames = np.concatenate(list(render_video(plan)))
    x = _actor_x(frames)
    shift = x[-4:].mean() - x[:4].mean()
    planned = (plan.episodes[0].x1 - plan.episodes[0].x0) * plan.size
    assert np.sign(shift) == np.sign(planned) and abs(shift) > 0.3 * abs(planned) > 5


@pytest.mark.parametrize("kind", ["fall", "shake", "collision"])
def test_anomalies_render_and_change_the_scene(kind: str) -> None:
    base = next(p for p in make_plan(PRESETS["tiny"], 0) if p.task == "ad")
    episodes = (
        Episode(kind="idle", start=0, end=16, x0=0.5, x1=0.5),
        Episode(kind=kind, start=16, end=48, x0=0.5, x1=0.5),
        Episode(kind="idle", start=48, end=64, x0=0.5, x1=0.5),
    )
    plan = replace(base, num_frames=64, episodes=episodes, anomaly=1, extra_actor=False)
    frames = np.concatenate(list(render_video(plan))).astype(np.float32)
    assert frames.shape == (64, 112, 112, 3)
    # pixels far from the first frame (beyond noise and lighting drift)
    changed = (np.abs(frames - frames[0]).sum(-1) > 60).sum((1, 2))
    assert changed[16:48].max() > changed[1:16].max() + 300
    again = np.concatenate(list(render_video(plan))).astype(np.float32)
    np.testing.assert_array_equal(frames, again)
