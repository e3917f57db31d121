"""Seed spread and bootstrap intervals of utility and privacy figures: the interval is of
the figure the report gives, the paired change sees the same videos on both sides, and more
test videos narrow it."""

from __future__ import annotations

import numpy as np
import pytest

from aamflow.stages.eval import metrics
from aamflow.stages.eval.attackers import Leakage
from aamflow.stages.eval.spread import (
    Scored,
    ad_scorer,
    ar_scorer,
    leakage_intervals,
    match_video,
    summarize,
    tad_scorer,
)


def _ar(correct: list[bool], ids: list[str] | None = None) -> Scored:
    ids = ids or [f"v{i}" for i in range(len(correct))]
    return Scored(
        value=ar_scorer(correct), ids=tuple(ids), per_video=tuple(correct), score=ar_scorer
    )


def test_seed_mean_std_and_an_interval_around_it() -> None:
    runs = [_ar([True] * 7 + [False] * 3), _ar([True] * 8 + [False] * 2)]
    out = summarize(runs, seed=0)
    assert out["mean"] == pytest.approx(0.75) and out["per_seed"] == [0.7, 0.8]
    assert out["std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    lo, hi = out["ci95"]
    assert lo < 0.75 < hi and hi - lo > 0.2  # ten videos: a wide interval


def test_more_test_videos_give_a_narrower_interval() -> None:
    def width(n: int) -> float:
        lo, hi = summarize([_ar([i % 4 != 0 for i in range(n)])], seed=0)["ci95"]
        return hi - lo

    assert width(400) < width(40) / 2


def test_the_change_is_paired_over_the_videos_both_stores_hold() -> None:
    # the store loses exactly one video of 20 that the reference gets right
    ref = [True] * 20
    mine = [False] + [True] * 19
    out = summarize([_ar(mine)], [_ar(ref)], seed=0)
    assert out["change"]["mean"] == pytest.approx(-0.05)
    lo, hi = out["change"]["ci95"]
    assert -0.2 <= lo <= hi <= 0.0  # never positive: no draw can favour the store
    # unpaired, the same draws would scatter both ways; paired against itself it is exact
    same = summarize([_ar(mine)], [_ar(mine)], seed=0)["change"]
    assert same["ci95"] == [0.0, 0.0] and same["paired_videos"] == 20
    # only the shared videos are paired
    other = summarize([_ar(mine)], [_ar(ref[:10], [f"v{i}" for i in range(10)])], seed=0)
    assert other["change"]["paired_videos"] == 10


def test_ad_and_tad_scorers_rebuild_their_figure_from_per_video_entries() -> None:
    scores = [np.array([0.1, 0.9]), np.array([0.2, 0.3])]
    truth = [np.repeat([0, 1], 4), np.zeros(8, np.int64)]
    score = ad_scorer(4)
    assert score(list(zip(scores, truth, strict=True))) == pytest.approx(1.0)
    # a perfect detection per video; a video drawn twice counts twice
    video = match_video([(1.0, 2.0, 0, 0.9)], [(1.0, 2.0, 0)])
    assert tad_scorer([video, video]) == pytest.approx(1.0)
    miss = match_video([(5.0, 6.0, 0, 0.9)], [(1.0, 2.0, 0)])
    assert tad_scorer([video, miss]) < 1.0


def test_the_bootstrap_tad_score_of_all_videos_is_the_reported_map() -> None:
    from aamflow.stages.eval import metrics
    from aamflow.stages.eval.spread import match_video

    rng = np.random.default_rng(3)
    videos = []
    for _ in range(6):
        gt = [(float(s), float(s + 4), int(rng.integers(0, 3))) for s in rng.uniform(0, 50, 4)]
        dets = [
            (float(s), float(s + rng.uniform(2, 6)), int(rng.integers(0, 3)), float(rng.random()))
            for s in rng.uniform(0, 50, 40)
        ]
        dets += [(s + 0.3, e + 0.2, c, 0.99) for s, e, c in gt[:2]]  # a few near hits
        videos.append((dets, gt))
    preds = [(k, *d) for k, (dets, _) in enumerate(videos) for d in dets]
    gts = [(k, *g) for k, (_, gt) in enumerate(videos) for g in gt]
    matched = [match_video(d, g) for d, g in videos]
    assert tad_scorer(matched) == pytest.approx(metrics.tad_map(preds, gts)["avg"])


def leakage(videos: int, clips: int, signal: float, seed: int = 0):
    """Attacker scores for a binary attribute, one label per video: ``signal`` is how far
    the attacker's probability leans towards the truth."""
    rng = np.random.default_rng(seed)
    label = np.arange(videos) % 2
    ids = np.repeat(np.array([f"v{i}" for i in range(videos)], dtype=object), clips)
    y = np.repeat(label, clips)
    p1 = np.clip(0.5 + signal * (2 * y - 1) + 0.3 * rng.standard_normal(len(y)), 0, 1)
    scored = Leakage(labels=y, proba={"linear": np.stack([1 - p1, p1], 1)}, rows=np.arange(len(y)))
    return scored, ids, "linear"


def test_an_unchanged_store_has_a_reduction_of_exactly_zero_in_every_draw() -> None:
    raw = leakage(40, 5, 0.2)
    out = leakage_intervals(raw, raw, seed=0)
    assert out["reduction_ci95"] == [0.0, 0.0] and out["paired_videos"] == 40
    lo, hi = out["leakage_ci95"]
    assert lo < metrics.cmap(raw[0].labels, raw[0].proba["linear"]) - 0.5 < hi


def test_a_blind_store_reduces_leakage_by_about_all_of_it() -> None:
    raw, anon = leakage(40, 5, 0.3), leakage(40, 5, 0.0, seed=1)
    out = leakage_intervals(anon, raw, seed=0)
    lo, hi = out["reduction_ci95"]
    assert 0.8 < lo < 1.0 < hi < 1.2  # chance-level scores: a reduction near 100%
    assert out["leakage_ci95"][0] < 0 < out["leakage_ci95"][1]


def test_fewer_test_videos_give_a_wider_reduction_interval() -> None:
    def width(videos: int) -> float:
        out = leakage_intervals(leakage(videos, 4, 0.05, 1), leakage(videos, 4, 0.15), seed=0)
        return out["reduction_ci95"][1] - out["reduction_ci95"][0]

    assert width(20) > width(200)


def test_videos_only_one_store_scored_are_left_out() -> None:
    raw = leakage(30, 3, 0.2)
    anon = leakage(20, 3, 0.2)  # v0..v19: a subset
    assert leakage_intervals(anon, raw, seed=0)["paired_videos"] == 20
