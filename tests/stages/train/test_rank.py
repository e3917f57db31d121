"""Choosing the video eraser's rank with no private label: held-out re-identification
against the seen task's score, pooled over cross-fitting folds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from aamflow.stages.models.eraser import (
    Erased,
    compose,
    nuisance_scatter,
    spanned_rank,
    static_clip_directions,
    video_eraser_directions,
)
from aamflow.stages.train.data import Latents
from aamflow.stages.train.rank import (
    Fold,
    rank_grid,
    score_folds,
    score_ranks,
    select_rank,
    select_two_stage,
    selection_data,
)


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


def folds_of(x, owner, static, s_owner, label, videos: int, k: int, with_ar: bool = True):
    """Cross-fitting folds over ``videos`` videos: video i is held out in fold i % k, the
    video eraser fitted on the others (the store's ``fit_video_eraser`` in miniature)."""
    folds = []
    for f in range(k):
        sel = np.arange(f, videos, k)
        fit = np.setdiff1d(np.arange(videos), sel)

        def video_of(first, rank, fit=fit):
            erased = (Erased(x, first, rank), Erased(static, first, rank)) if rank else (x, static)
            return video_eraser_directions(
                nuisance_scatter(erased[0], owner, erased[1], s_owner, fit, label[fit])
            )

        ar = label[sel] if with_ar else np.full(len(sel), -1)
        data = selection_data(
            latents(sel, x, owner, static, s_owner),
            label[sel],
            ar,
            latents(fit, x, owner, static, s_owner) if with_ar else None,
            label[fit],
        )
        folds.append(
            Fold(data=data, video_of=video_of, static=static_clip_directions(static, s_owner, fit))
        )
    return folds


def choose(with_ar: bool = True):
    x, owner, static, s_owner, label = corpus()
    folds = folds_of(x, owner, static, s_owner, label, 160, 4, with_ar)
    final = video_eraser_directions(
        nuisance_scatter(x, owner, static, s_owner, np.arange(160), label)
    )
    return select_rank(folds, final, selection="test", grid=rank_grid(10)), final


def test_the_rank_removes_what_identifies_a_video_and_keeps_the_task() -> None:
    choice, _ = choose()
    curve = {row["rank"]: row for row in choice.curve}
    assert curve[0]["reid_static"] > 0.9 and curve[0]["ar_top1"] == 1.0  # raw: videos are found
    # two appearance directions: the rank erases them; the oblique eraser removes the class
    # direction last (its between/keep ratio is ~0), so the action survives every rank
    assert curve[2]["reid"] < 0.3
    assert all(row["ar_clip_top1"] == 1.0 for row in curve.values())
    assert 2 <= choice.rank and curve[choice.rank]["reid"] <= curve[2]["reid"]
    assert "re-identification" in choice.rule and choice.selection_videos == 160  # every video


def test_fold_curves_are_pooled_by_what_each_fold_counted() -> None:
    x, owner, static, s_owner, label = corpus(videos=90)
    folds = folds_of(x, owner, static, s_owner, label, 90, 3)[:2]
    small = replace(folds[1], data=replace_rows(folds[1].data, 10))  # 10 of its 30 videos
    erasers = [(f.video_of(None, 0), 0) for f in (folds[0], small)]
    pooled = score_folds([folds[0], small], erasers, [0, 2], "video")
    alone = [
        score_ranks(d, f.data, [0, 2], "video")
        for (d, _), f in zip(erasers, (folds[0], small), strict=True)
    ]
    for i in range(2):
        for name, weights in (("reid_clips", (30, 10)), ("ar_clip_top1", (120, 40))):
            values = [a[i][name] for a in alone]
            expected = (values[0] * weights[0] + values[1] * weights[1]) / sum(weights)
            assert abs(pooled[i][name] - expected) < 1e-12


def replace_rows(data, n):
    """Selection data cut to its first ``n`` videos (clips of AR: 4 per video)."""
    clips, codes, labels = data.ar_sel
    keep = codes < n
    return replace(
        data,
        static_pairs=tuple(a[:n] for a in data.static_pairs),
        clip_pairs=tuple(a[:n] for a in data.clip_pairs),
        ar_sel=(clips[keep], codes[keep], labels[:n]),
    )


def test_without_ar_labels_the_rank_follows_the_variance_ratio() -> None:
    choice, directions = choose(with_ar=False)
    assert choice.curve == []  # nothing to guard a curve with: none is scored
    assert choice.rank == int((directions.ratio >= 1).sum()) and "ratio" in choice.rule


def test_the_grid_covers_the_dimension_in_even_steps() -> None:
    assert rank_grid(512) == list(range(0, 512, 16))
    assert rank_grid(10) == list(range(10))


def two_stream_corpus(videos: int = 150, clips: int = 4, seed: int = 0):
    """Clips of a two-stream encoder: 6 appearance dims (constant within a video, the whole
    of a static clip) beside 4 motion dims that are zero on a static clip and carry the
    action (3 classes) plus a per-video style (a gait-like nuisance, within the class)."""
    rng = np.random.default_rng(seed)
    label = np.arange(videos) % 3
    appearance = rng.standard_normal((videos, 6))
    style = rng.standard_normal(videos)
    c_dirs = 2.0 * rng.standard_normal((3, 4))
    owner = np.repeat(np.arange(videos), clips)
    motion = c_dirs[label[owner]] + 0.3 * rng.standard_normal((len(owner), 4))
    motion[:, 3] += 2.0 * style[owner]  # identifies the video, not the action
    pose = 0.05 * rng.standard_normal((len(owner), 6))
    x = np.concatenate([appearance[owner] + pose, motion], 1)
    s_owner = np.repeat(np.arange(videos), 3)
    s_pose = 0.05 * rng.standard_normal((len(s_owner), 6))
    static = np.concatenate([appearance[s_owner] + s_pose, np.zeros((len(s_owner), 4))], 1)
    return x.astype(np.float32), owner, static.astype(np.float32), s_owner, label


def test_two_stages_remove_the_static_span_then_the_video_style_and_keep_the_action() -> None:
    x, owner, static, s_owner, label = two_stream_corpus()
    static_dirs = static_clip_directions(static, s_owner, np.arange(150))
    assert spanned_rank(static_dirs) == 6  # a static clip never moves the motion dims
    assert np.abs(static_dirs.basis[6:, :6]).max() < 1e-9
    folds = folds_of(x, owner, static, s_owner, label, 150, 5)
    choice = select_two_stage(folds, static_dirs, selection="t", dim=10)
    assert choice.static_rank == 6 and choice.rank >= 7
    rows = {(r["stage"], r["rank"]): r for r in choice.curve}
    assert rows[("static clips", 0)]["reid_static"] > 0.9
    assert rows[("video", choice.rank)]["reid"] < 0.2
    assert (
        rows[("video", choice.rank)]["ar_clip_top1"]
        >= rows[("static clips", 0)]["ar_clip_top1"] - 0.01
    )
    first = static_dirs  # the final eraser: both stages fitted on every video
    second = video_eraser_directions(
        nuisance_scatter(
            Erased(x, first, 6), owner, Erased(static, first, 6), s_owner, np.arange(150), label
        )
    )
    erased = compose(first, 6, second).apply(x, choice.rank)
    # the appearance of every clip is gone: one value per appearance dim, whatever the video
    assert erased[:, :6].std(0).max() < 0.02 * x[:, :6].std(0).min()


def test_a_composed_eraser_is_the_two_erasers_in_turn() -> None:
    x, owner, static, s_owner, label = two_stream_corpus(seed=1)
    fit = np.arange(100)
    first = static_clip_directions(static, s_owner, fit)
    second = video_eraser_directions(
        nuisance_scatter(
            Erased(x, first, 6), owner, Erased(static, first, 6), s_owner, fit, label[fit]
        )
    )
    both = compose(first, 6, second)
    for k in (0, 1, 3):
        np.testing.assert_allclose(
            both.apply(x, 6 + k), second.apply(first.apply(x, 6), k), atol=1e-9
        )
