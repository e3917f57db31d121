"""Choosing the video eraser's rank from the training data, with no private label.

For every rank of a grid the eraser is fitted on *fit* videos and scored on held-out
*selection* videos (the val split, or every fifth training video when the val split is too
small), on two label-free curves:

- **re-identification** (privacy proxy, lower is better): how often the nearest neighbour
  (cosine, on features standardised as the attackers do) of one of a video's clips, among
  the other clips of the selection videos of the same seen-task class, is the other clip of
  the same video. Measured on pairs of static clips and on pairs of ordinary clips (first
  and last), averaged. What is left once the class is fixed is what identifies the video:
  its appearance, background and style of motion.
- **seen-task score** (utility): clip top-1 of a logistic probe fitted on the erased clips of
  the fit videos' action labels (AR), on the selection videos' clips. Clip level, because
  a val split of ~50 videos moves video top-1 in 2-point steps: on the demo corpora the
  video-level curve wandered by 5 points while the eval's AR dropped only where the clip
  level did (benchmarks/RESULTS.md).

Rule: among the ranks whose seen-task clip top-1 is at most ``AR_TOLERANCE`` (1 point, the
product's AR target) below the unerased score, take the one with the lowest
re-identification; of those within one selection video of it, the smallest rank (erase no
more than needed).

The default eraser has two stages (``select_two_stage``): the static-clip axes first (none,
or all the axes static clips vary in), then the
video eraser refitted on what the chosen first stage leaves (ranks in steps of the
remaining dimension / 32). The rule picks each in turn, both against the *unerased*
baseline, so their composition keeps the seen task within the tolerance. Measured on the
opennsfw encoder (benchmarks/RESULTS.md), whose flow stream is zero on static clips: stage
1 takes exactly the 1024 appearance axes, stage 2 the between-video motion style (gait).

Without AR labels there is no utility curve to guard the choice: no static-clip stage, and
the video rank is the number of directions whose between-video variance exceeds their keep
variance (ratio >= 1).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from aamflow.stages.models.eraser import (
    Erased,
    EraserDirections,
    NuisanceScatter,
    compose,
    nuisance_scatter,
    spanned_rank,
    static_clip_directions,
    video_eraser_directions,
)
from aamflow.stages.models.heads import fit_logistic

from .data import Latents, VideoRoles, read_latents

log = logging.getLogger("aamflow.train")

GRID_STEPS = 32  # ranks tried: multiples of D / GRID_STEPS below D
MIN_SELECTION = 20  # selection videos with a clip pair below which a train fold is used
HOLD_OUT_EVERY = 5  # the train fold: every fifth training video
MAX_PROBE_CLIPS = 20_000  # AR clips the logistic probe is fitted on (evenly spread)
PROBE_ITERS = 100  # L-BFGS iterations of the probe
PROBE_DECAY = 1e-4  # its L2 penalty on standardised features (the eval's linear probe's)
AR_TOLERANCE = 0.01  # clip top-1 a rank may lose: the product's AR target, 1 point


@dataclass(frozen=True, kw_only=True)
class RankChoice:
    """The chosen rank, the rule that chose it and the curve it was chosen from."""

    rank: int
    rule: str
    selection: str  # "val split" or "train fold (every 5th video)"
    static_rank: int = 0  # of ``rank``, the directions the static-clip stage removes
    selection_videos: int
    curve: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_grid(dim: int) -> list[int]:
    """0 and every multiple of ``dim / GRID_STEPS`` below ``dim``."""
    step = max(1, dim // GRID_STEPS)
    return list(range(0, dim, step))


@dataclass(frozen=True, kw_only=True)
class SelectionData:
    """Host arrays of the selection videos and of the fit videos' AR clips."""

    static_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # a, b, class per video
    clip_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    ar_fit: tuple[np.ndarray, np.ndarray] | None  # clips [C, D], label per clip
    ar_sel: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # clips, video code, label per video


def _pairs(x: np.ndarray, start: np.ndarray, count: np.ndarray, labels: np.ndarray) -> Any:
    ok = count >= 2
    if ok.sum() < 2:
        return None
    first, last = start[ok], start[ok] + count[ok] - 1
    return x[first], x[last], labels[ok]


def selection_data(
    sel: Latents,
    sel_classes: np.ndarray,
    sel_labels: np.ndarray,
    fit_ar: Latents | None,
    fit_ar_labels: np.ndarray,
) -> SelectionData:
    """Arrange the latents ``select_rank`` reads. Per selection video: its seen-task class
    for re-identification (negative codes are unlabelled kinds) and its AR label (-1: none);
    per fit AR video its label; all aligned with each Latents' rows."""
    ar_fit = ar_sel = None
    if fit_ar is not None and len(fit_ar.rows):
        ar_fit = (fit_ar.clips, np.repeat(fit_ar_labels, fit_ar.clip_count))
        keep = sel_labels >= 0
        if keep.any():
            idx = np.flatnonzero(keep)
            spans = [
                np.arange(sel.clip_start[i], sel.clip_start[i] + sel.clip_count[i]) for i in idx
            ]
            codes = np.repeat(np.arange(len(idx)), [len(s) for s in spans])
            ar_sel = (sel.clips[np.concatenate(spans)], codes, sel_labels[idx])
    return SelectionData(
        static_pairs=_pairs(sel.static, sel.static_start, sel.static_count, sel_classes),
        clip_pairs=_pairs(sel.clips, sel.clip_start, sel.clip_count, sel_classes),
        ar_fit=ar_fit,
        ar_sel=ar_sel,
    )


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = x.mean(0), x.std(0)
    return mean, np.where(std > 1e-6 * max(float(std.max(initial=0.0)), 1e-30), std, 1.0)


def reidentification(a: np.ndarray, b: np.ndarray, classes: np.ndarray, stats: Any) -> float:
    """Share of clips whose nearest other clip (cosine, standardised) within their class is
    their own video's other clip."""
    mean, std = stats
    z = (np.concatenate([a, b]) - mean) / std
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    c = np.concatenate([classes, classes])
    sim[(c[:, None] != c[None, :])] = -np.inf  # unlabelled videos share class -1
    n = len(a)
    partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    return float((sim.argmax(1) == partner).mean())


def probe_top1(fit: tuple[np.ndarray, np.ndarray], sel: Any, stats: Any) -> tuple[float, float]:
    """Video top-1 (mean of a video's clip probabilities) and clip top-1 of a multinomial
    logistic probe (L-BFGS from zero, the eval's linear AR probe in miniature)."""
    mean, std = stats
    x = torch.from_numpy(((fit[0] - mean) / std).astype(np.float32))
    classes, y = np.unique(fit[1], return_inverse=True)
    y = torch.from_numpy(y.astype(np.int64))
    model = fit_logistic(x, y, len(classes), max_iter=PROBE_ITERS, weight_decay=PROBE_DECAY)
    clips, codes, labels = sel
    with torch.no_grad():
        z = torch.from_numpy(((clips - mean) / std).astype(np.float32))
        proba = torch.softmax(model(z), 1).numpy()
    per_video = np.zeros((len(labels), len(classes)))
    np.add.at(per_video, codes, proba)
    video = float((classes[per_video.argmax(1)] == labels).mean())
    return video, float((classes[proba.argmax(1)] == labels[codes]).mean())


def score_ranks(
    directions: EraserDirections, data: SelectionData, grid: list[int], stage: str
) -> list[dict[str, Any]]:
    """The two label-free curves at each rank of ``grid`` (one row per rank)."""
    curve = []
    for k in grid:
        fit_clips = directions.apply(data.ar_fit[0], k) if data.ar_fit is not None else None
        if fit_clips is None:  # standardise on the selection clips when no AR clips exist
            pairs = data.clip_pairs or data.static_pairs
            fit_clips = directions.apply(np.concatenate(pairs[:2]), k) if pairs else None
        stats = _standardiser(fit_clips) if fit_clips is not None else None
        row: dict[str, Any] = {
            "stage": stage,
            "rank": k,
            "ratio": None if k == 0 else round(float(directions.ratio[k - 1]), 4),
        }
        for name, pairs in (("reid_static", data.static_pairs), ("reid_clips", data.clip_pairs)):
            if pairs is not None and stats is not None:
                a, b, c = pairs
                row[name] = reidentification(
                    directions.apply(a, k), directions.apply(b, k), c, stats
                )
        if data.ar_fit is not None and data.ar_sel is not None:
            clips, codes, labels = data.ar_sel
            sel = (directions.apply(clips, k), codes, labels)
            row["ar_top1"], row["ar_clip_top1"] = probe_top1(
                (fit_clips, data.ar_fit[1]), sel, stats
            )
        reid = [row[n] for n in ("reid_static", "reid_clips") if n in row]
        row["reid"] = float(np.mean(reid)) if reid else None
        curve.append(row)
    return curve


def _selection_size(data: SelectionData) -> int:
    return max(
        (len(p[0]) for p in (data.static_pairs, data.clip_pairs) if p is not None), default=0
    )


def guarded(data: SelectionData) -> bool:
    """Whether a seen-task curve exists to guard a choice: AR clips on both sides and pairs
    to re-identify."""
    pairs = data.static_pairs is not None or data.clip_pairs is not None
    return data.ar_fit is not None and data.ar_sel is not None and pairs


def choose(curve: list[dict[str, Any]], baseline: dict[str, Any], n_sel: int) -> int:
    """The rule: among the rows whose AR clip top-1 is at most ``AR_TOLERANCE`` below the
    unerased ``baseline``'s, the lowest re-identification; of those within one selection
    video of it, the smallest rank."""
    floor = baseline["ar_clip_top1"] - AR_TOLERANCE - 1e-9
    admissible = [r for r in curve if r["ar_clip_top1"] >= floor]  # holds the baseline's rank
    best = min(r["reid"] for r in admissible)
    slack = 1.0 / max(n_sel, 1) + 1e-9
    return min(r["rank"] for r in admissible if r["reid"] <= best + slack)


RULE = (
    "lowest held-out re-identification (within one video) among ranks whose held-out "
    f"AR clip top-1 stays within {AR_TOLERANCE:.0%} of the unerased features'"
)


def select_rank(
    directions: EraserDirections, data: SelectionData, *, selection: str, grid: list[int]
) -> RankChoice:
    """Score each rank of ``grid`` on the selection videos and apply the rule above."""
    curve = score_ranks(directions, data, grid, "video")
    n_sel = _selection_size(data)
    if not guarded(data):
        rank = int((directions.ratio >= 1.0).sum())
        rank = min(rank, max(grid))
        rule = "ratio >= 1 (no AR labels on held-out videos to guard the choice)"
        return RankChoice(
            rank=rank, rule=rule, selection=selection, selection_videos=n_sel, curve=curve
        )
    rank = choose(curve, curve[0], n_sel)
    return RankChoice(
        rank=rank, rule=RULE, selection=selection, selection_videos=n_sel, curve=curve
    )


def static_grid(directions: EraserDirections, dim: int) -> list[int]:
    """The static-clip stage's ranks: none, or every axis static clips vary in.

    All or nothing, measured: where static clips span only part of the space (an encoder
    with a temporal stream that is zero on a static clip) the full rank removes that part
    exactly and intermediate ranks cost the seen task more (opennsfw: held-out AR 98% at
    34 axes, 67% at 884, 100% at all 1,024); where they span everything (the builtin
    bank), a partial stage traded 1-2 points of the eval's AR, unseen by the guard, for
    privacy the video stage also reaches (benchmarks/RESULTS.md)."""
    top = min(spanned_rank(directions), dim)
    return sorted({0, top})


def select_two_stage(
    static_dirs: EraserDirections,
    video_of: Any,
    data: SelectionData,
    *,
    selection: str,
    dim: int,
) -> tuple[EraserDirections, RankChoice]:
    """Choose the static-clip stage's rank, then the video stage's on what it leaves.

    ``video_of(directions, rank)`` fits the video eraser's directions on latents erased by
    the static-clip stage at ``rank``. Both ranks follow the same rule against the same
    unerased baseline, so the pair keeps the seen task within the tolerance.
    """
    n_sel = _selection_size(data)
    if not guarded(data):
        video = video_of(static_dirs, 0)
        return video, select_rank(video, data, selection=selection, grid=rank_grid(dim))
    first = score_ranks(static_dirs, data, static_grid(static_dirs, dim), "static clips")
    baseline = first[0]
    r1 = choose(first, baseline, n_sel)
    video = video_of(static_dirs, r1)
    both = compose(static_dirs, r1, video) if r1 else video
    # the video stage's rank 0 is the static stage's chosen row: the same eraser
    chosen = next(r for r in first if r["rank"] == r1)
    grid = [r1 + k for k in rank_grid(dim - r1)[1:]]
    second = [{**chosen, "stage": "video"}, *score_ranks(both, data, grid, "video")]
    rank = choose(second, baseline, n_sel)
    return both, RankChoice(
        rank=rank,
        static_rank=r1,
        rule=f"static clips, then video: {RULE}",
        selection=selection,
        selection_videos=n_sel,
        curve=first + second,
    )


# --- from a store ---------------------------------------------------------------------


def scatter_groups(roles: VideoRoles, tasks: tuple[str, ...], num_actions: int) -> np.ndarray:
    """Per video, the seen-task class its mean is taken relative to: the action for AR
    videos when AR is seen, ``num_actions + anomaly`` for AD videos when AD is seen, and a
    negative code per kind of unlabelled video otherwise (TAD videos hold several classes)."""
    groups = np.full(len(roles), -1, np.int64)
    if "ad" in tasks:
        ad = roles.ad_label >= 0
        groups[ad] = num_actions + roles.ad_label[ad]
    groups[roles.tad] = -2
    if "ar" in tasks:
        ar = roles.ar_label >= 0
        groups[ar] = roles.ar_label[ar]
    return groups


def _scatter(
    store: Any,
    roles: VideoRoles,
    groups: np.ndarray,
    first: EraserDirections | None = None,
    rank: int = 0,
) -> NuisanceScatter:
    clips, static = store.clip_features(), store.static_features()
    if first is not None and rank:
        clips, static = Erased(clips, first, rank), Erased(static, first, rank)
    return nuisance_scatter(
        clips, store.read("clip_video"), static, store.read("static_video"), roles.rows, groups
    )


def _static_directions(store: Any, roles: VideoRoles) -> EraserDirections | None:
    owner = store.read("static_video")
    if np.isin(owner, roles.rows).sum() < 2:
        return None
    return static_clip_directions(store.static_features(), owner, roles.rows)


def _even(positions: np.ndarray, limit: int) -> np.ndarray:
    if len(positions) <= limit:
        return positions
    return positions[np.linspace(0, len(positions) - 1, limit).round().astype(np.int64)]


def fit_directions(store: Any, train: VideoRoles, tasks: tuple[str, ...]) -> EraserDirections:
    """The video eraser's directions fitted on every training video with clips."""
    train = train.select(train.clip_count >= 1)
    groups = scatter_groups(train, tasks, len(store.label_spaces.actions))
    return video_eraser_directions(_scatter(store, train, groups))


def fit_video_eraser(
    store: Any,
    train: VideoRoles,
    val: VideoRoles,
    tasks: tuple[str, ...],
    max_selection: int = 512,
) -> tuple[EraserDirections, RankChoice]:
    """Fit the video eraser's directions on the training videos and choose its rank.

    The selection videos are the val split when it holds at least ``MIN_SELECTION`` videos
    with a pair of clips (and, with AR seen, as many labelled AR videos); otherwise every
    fifth training video is held out, the rank is chosen with an eraser fitted on the
    rest, and the final directions are refitted on every training video.
    """
    num_actions = len(store.label_spaces.actions)
    train = train.select(train.clip_count >= 1)
    val = val.select(val.clip_count >= 1) if len(val) else val
    pairs = (val.static_count >= 2) | (val.clip_count >= 2) if len(val) else np.zeros(0, bool)
    enough = pairs.sum() >= MIN_SELECTION
    if "ar" in tasks:
        enough &= (val.ar_label[pairs] >= 0).sum() >= MIN_SELECTION if len(val) else False
    groups = scatter_groups(train, tasks, num_actions)
    if enough:
        fit, fit_groups, sel = (
            train,
            groups,
            val.select(_even(np.flatnonzero(pairs), max_selection)),
        )
        selection = "val split"
    else:
        fold = np.arange(len(train)) % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1
        fit, fit_groups = train.select(~fold), groups[~fold]
        sel = train.select(_even(np.flatnonzero(fold), max_selection))
        selection = f"train fold (every {HOLD_OUT_EVERY}th training video)"
    sel_groups = scatter_groups(sel, tasks, num_actions)
    ar_fit = None
    fit_labels = np.zeros(0, np.int64)
    if "ar" in tasks:
        ar_pos = np.flatnonzero(fit.ar_label >= 0)
        per_video = max(1.0, float(fit.clip_count[ar_pos].mean())) if len(ar_pos) else 1.0
        ar_pos = _even(ar_pos, max(1, int(MAX_PROBE_CLIPS / per_video)))
        if len(ar_pos):
            ar_fit = read_latents(store, fit.rows[ar_pos])
            order = {int(r): i for i, r in enumerate(fit.rows[ar_pos])}
            at = np.asarray([order[int(r)] for r in ar_fit.rows], dtype=np.int64)
            fit_labels = fit.ar_label[ar_pos][at]
    lat = read_latents(store, sel.rows)
    where = {int(r): i for i, r in enumerate(sel.rows)}
    order = np.asarray([where[int(r)] for r in lat.rows], dtype=np.int64)
    ar_labels = sel.ar_label if "ar" in tasks else np.full(len(sel), -1, np.int64)
    data = selection_data(lat, sel_groups[order], ar_labels[order], ar_fit, fit_labels)
    static_dirs = _static_directions(store, fit)
    if static_dirs is None:  # no static clips: the video stage alone
        directions = video_eraser_directions(_scatter(store, fit, fit_groups))
        grid = rank_grid(store.feature_dim)
        choice = select_rank(directions, data, selection=selection, grid=grid)
    else:

        def video_of(first: EraserDirections, rank: int) -> EraserDirections:
            return video_eraser_directions(_scatter(store, fit, fit_groups, first, rank))

        directions, choice = select_two_stage(
            static_dirs, video_of, data, selection=selection, dim=store.feature_dim
        )
    if not enough:  # the final eraser sees every training video
        r1 = choice.static_rank
        first = _static_directions(store, train) if r1 else None
        video = video_eraser_directions(_scatter(store, train, groups, first, r1))
        directions = compose(first, r1, video) if first is not None else video
    log.info(
        "video eraser: rank %d of %d, %d of them static-clip axes (%s)",
        choice.rank,
        store.feature_dim,
        choice.static_rank,
        choice.rule,
    )
    return directions, choice
