"""Choosing the video eraser's rank with no private label: held-out re-identification
against the seen task's score."""

from __future__ import annotations

import numpy as np

from aamflow.stages.models.eraser import nuisance_scatter, video_eraser_directions
from aamflow.stages.train.data import Latents
from aamflow.stages.train.rank import rank_grid, select_rank, selection_data


def corpus(videos: int = 160, clips: int = 4, seed: int = 0):
    """10-d clips: a 2-d appearance constant within a video, 3-d motion varying over time
    and an action (3 classes, decodable), appearance leaning on a motion direction."""
    rng = np.random.default_rng(seed)
    a_dirs, m_dirs = rng.standard_normal((2, 10)), rng.standard_normal((3, 10))
    a_dirs[0] += m_dirs[0]
    c_dirs = 2.0 * rng.standard_normal((3, 10))
    label = np.arange(videos) % 3
    appearance = 2.0 * rng.standard_normal((videos, 2))
    owner = np.repeat(np.arange(videos), clips)
    x = appearance[owner] @ a_dirs + 0.5 * rng.standard_normal((len(owner), 3)) @ m_dirs
    x = x + c_dirs[label[owner]] + 0.05 * rng.standard_normal(x.shape)
    s_owner = np.repeat(np.arange(videos), 2)
    static = appearance[s_owner] @ a_dirs + 0.05 * rng.standard_normal((len(s_owner), 10))
    return x.astype(np.float32), owner, static.astype(np.float32), s_owner, label


def latents(rows, x, owner, static, s_owner) -> Latents:
    picks = [np.flatnonzero(owner == r) for r in rows]
    spicks = [np.flatnonzero(s_owner == r) for r in rows]
    cc, sc = np.array([len(p) for p in picks]), np.array([len(p) for p in spicks])
    return Latents(
        rows=np.asarray(rows),
        clips=x[np.concatenate(picks)],
        clip_start=np.cumsum(cc) - cc,
        clip_count=cc,
        static=static[np.concatenate(spicks)],
        static_start=np.cumsum(sc) - sc,
        static_count=sc,
    )


def choose(with_ar: bool = True):
    x, owner, static, s_owner, label = corpus()
    fit, sel = np.arange(120), np.arange(120, 160)
    scatter = nuisance_scatter(x, owner, static, s_owner, fit, label[fit])
    directions = video_eraser_directions(scatter)
    sel_lat = latents(sel, x, owner, static, s_owner)
    fit_lat = latents(fit, x, owner, static, s_owner) if with_ar else None
    ar = label[sel] if with_ar else np.full(len(sel), -1)
    data = selection_data(sel_lat, label[sel], ar, fit_lat, label[fit])
    return select_rank(directions, data, selection="test", grid=rank_grid(10)), directions


def test_the_rank_removes_what_identifies_a_video_and_keeps_the_task() -> None:
    choice, _ = choose()
    curve = {row["rank"]: row for row in choice.curve}
    assert curve[0]["reid_static"] > 0.9 and curve[0]["ar_top1"] == 1.0  # raw: videos are found
    # two appearance directions: the rank erases them; the oblique eraser removes the class
    # direction last (its between/keep ratio is ~0), so the action survives every rank
    assert curve[2]["reid"] < 0.3
    assert all(row["ar_clip_top1"] == 1.0 for row in curve.values())
    assert 2 <= choice.rank and curve[choice.rank]["reid"] <= curve[2]["reid"]
    assert "re-identification" in choice.rule and choice.selection_videos == 40


def test_without_ar_labels_the_rank_follows_the_variance_ratio() -> None:
    choice, directions = choose(with_ar=False)
    assert "ar_top1" not in choice.curve[0]
    assert choice.rank == int((directions.ratio >= 1).sum()) and "ratio" in choice.rule


def test_the_grid_covers_the_dimension_in_even_steps() -> None:
    assert rank_grid(512) == list(range(0, 512, 16))
    assert rank_grid(10) == list(range(10))
