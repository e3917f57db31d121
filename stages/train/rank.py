"""Choosing the video eraser's rank from the training data, with no private label.

The ranks are scored by cross-fitting over the training videos: they are split into
``FOLDS`` folds, and for each fold the eraser is fitted on the other folds and scored on
that fold's videos; the counts of every fold are pooled into one curve (so every training
video is a held-out video once, and the val split stays for the adapter's validation).
Pooling matters: a val split of ~40 AR videos moves the clip curve by 2–3 points between
neighbouring ranks, and on opennsfw (seed 1) it rejected the static-clip stage for 4
clips of 123 that the pooled 745 clips show to be noise (benchmarks/RESULTS.md).

Two label-free curves:

- **re-identification** (privacy proxy, lower is better): how often the nearest neighbour
  (cosine, on features standardised as the attackers do) of one of a video's clips, among
  the other clips of the fold's videos of the same seen-task class, is the other clip of
  the same video. Measured on pairs of static clips and on pairs of ordinary clips (first
  and last), averaged. What is left once the class is fixed is what identifies the video:
  its appearance, background and style of motion.
- **seen-task score** (utility): clip top-1 of a logistic probe fitted on the erased clips of
  the other folds' action labels (AR), on the fold's clips. Clip level, because video
  top-1 moves in steps of whole videos: on the demo corpora the video-level curve
  wandered by 5 points while the eval's AR dropped only where the clip level did.

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
from collections.abc import Callable, Sequence
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
FOLDS = 5  # cross-fitting folds over the training videos
MAX_PROBE_CLIPS = 20_000  # AR clips the logistic probe is fitted on (evenly spread)
PROBE_ITERS = 100  # L-BFGS iterations of the probe
PROBE_DECAY = 1e-4  # its L2 penalty on standardised features (the eval's linear probe's)
AR_TOLERANCE = 0.01  # clip top-1 a rank may lose: the product's AR target, 1 point


@dataclass(frozen=True, kw_only=True)
class RankChoice:
    """The chosen rank, the rule that chose it and the curve it was chosen from."""

    rank: int
    rule: str
    selection: str  # how the held-out videos were drawn ("5-fold cross-fitting ...")
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


@dataclass(frozen=True, kw_only=True)
class Fold:
    """One cross-fitting fold: its held-out videos' data and the eraser directions fitted
    on the other folds. ``video_of(first, rank)`` fits the video eraser's directions on
    the other folds' latents erased by ``first`` at ``rank``; ``static`` is the static-clip
    stage's directions (None when the other folds hold no static clips)."""

    data: SelectionData
    video_of: Callable[[EraserDirections | None, int], EraserDirections]
    static: EraserDirections | None = None


# per curve value, the count it is a share of (the weight of a fold when pooling)
_WEIGHTS: dict[str, Callable[[SelectionData], int]] = {
    "reid_static": lambda d: len(d.static_pairs[0]) if d.static_pairs is not None else 0,
    "reid_clips": lambda d: len(d.clip_pairs[0]) if d.clip_pairs is not None else 0,
    "ar_top1": lambda d: len(d.ar_sel[2]) if d.ar_sel is not None else 0,
    "ar_clip_top1": lambda d: len(d.ar_sel[0]) if d.ar_sel is not None else 0,
}


def score_folds(
    folds: Sequence[Fold],
    erasers: Sequence[tuple[EraserDirections, int]],
    grid: list[int],
    stage: str,
) -> list[dict[str, Any]]:
    """The curves at each rank of ``grid``, pooled over the folds: fold ``i`` scores its
    eraser ``erasers[i]`` (directions, rank offset) at ``offset + k`` for each ``k`` of
    ``grid``, and each value is the count-weighted mean over the folds that measured it."""
    rows = [
        score_ranks(directions, fold.data, [offset + k for k in grid], stage)
        for fold, (directions, offset) in zip(folds, erasers, strict=True)
    ]
    curve = []
    for i, k in enumerate(grid):
        row: dict[str, Any] = {"stage": stage, "rank": k}
        ratios = [r[i]["ratio"] for r in rows if r[i]["ratio"] is not None]
        row["ratio"] = round(float(np.mean(ratios)), 4) if ratios else None
        for name, weight in _WEIGHTS.items():
            pairs = [
                (r[i][name], weight(f.data))
                for r, f in zip(rows, folds, strict=True)
                if name in r[i]
            ]
            total = sum(w for _, w in pairs)
            if total:
                row[name] = sum(v * w for v, w in pairs) / total
        reid = [row[n] for n in ("reid_static", "reid_clips") if n in row]
        row["reid"] = float(np.mean(reid)) if reid else None
        curve.append(row)
    return curve


def _selection_size(folds: Sequence[Fold]) -> int:
    return sum(max(_WEIGHTS["reid_static"](f.data), _WEIGHTS["reid_clips"](f.data)) for f in folds)


def guarded(folds: Sequence[Fold]) -> bool:
    """Whether a seen-task curve exists to guard a choice: in every fold, AR clips on both
    sides and pairs to re-identify."""
    return bool(folds) and all(
        f.data.ar_fit is not None
        and f.data.ar_sel is not None
        and (f.data.static_pairs is not None or f.data.clip_pairs is not None)
        for f in folds
    )


def choose(curve: list[dict[str, Any]], baseline: dict[str, Any], n_sel: int) -> int:
    """The rule: among the rows whose AR clip top-1 is at most ``AR_TOLERANCE`` below the
    unerased ``baseline``'s, the lowest re-identification; of those within one held-out
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
    folds: Sequence[Fold], final: EraserDirections, *, selection: str, grid: list[int]
) -> RankChoice:
    """Score each rank of ``grid`` over the folds (each fold's video eraser fitted on
    unerased latents) and apply the rule; ``final`` (the directions fitted on every
    training video) gives the unguarded rank."""
    n_sel = _selection_size(folds)
    if not guarded(folds):
        rank = min(int((final.ratio >= 1.0).sum()), max(grid))
        rule = "ratio >= 1 (no AR labels on held-out videos to guard the choice)"
        return RankChoice(rank=rank, rule=rule, selection=selection, selection_videos=n_sel)
    curve = score_folds(folds, [(f.video_of(None, 0), 0) for f in folds], grid, "video")
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
    folds: Sequence[Fold], static: EraserDirections, *, selection: str, dim: int
) -> RankChoice:
    """Choose the static-clip stage's rank, then the video stage's on what it leaves.

    ``static`` (fitted on every training video) fixes the static-clip grid; each fold
    erases with its own static directions (at most the axes they span). Both ranks follow
    the same rule against the same unerased baseline, so the pair keeps the seen task
    within the tolerance.
    """
    n_sel = _selection_size(folds)
    top = static_grid(static, dim)[-1]
    own = [min(spanned_rank(f.static), top) for f in folds]  # what each fold's clips span
    first = score_folds(folds, [(f.static, 0) for f in folds], [0], "static clips")
    if top:
        erase_all = [(f.static, r - top) for f, r in zip(folds, own, strict=True)]
        first += score_folds(folds, erase_all, [top], "static clips")
    baseline = first[0]
    r1 = choose(first, baseline, n_sel)
    erasers = []
    for f, r in zip(folds, own, strict=True):
        used = r if r1 else 0
        video = f.video_of(f.static, used)
        erasers.append((compose(f.static, used, video) if used else video, used - r1))
    # the video stage's rank 0 is the static stage's chosen row: the same eraser
    chosen = next(r for r in first if r["rank"] == r1)
    grid2 = [r1 + k for k in rank_grid(dim - r1)[1:]]
    second = [{**chosen, "stage": "video"}, *score_folds(folds, erasers, grid2, "video")]
    rank = choose(second, baseline, n_sel)
    return RankChoice(
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


def _fold(
    store: Any, train: VideoRoles, groups: np.ndarray, held: np.ndarray, max_selection: int
) -> Fold:
    """The fold holding out ``held`` (a mask over ``train``), AR seen."""
    num_actions = len(store.label_spaces.actions)
    fit, fit_groups = train.select(~held), groups[~held]
    sel = train.select(_even(np.flatnonzero(held), max_selection))
    ar_fit, fit_labels = None, np.zeros(0, np.int64)
    ar_pos = np.flatnonzero(fit.ar_label >= 0)
    if len(ar_pos):
        per_video = max(1.0, float(fit.clip_count[ar_pos].mean()))
        ar_pos = _even(ar_pos, max(1, int(MAX_PROBE_CLIPS / per_video)))
        ar_fit = read_latents(store, fit.rows[ar_pos])
        order = {int(r): i for i, r in enumerate(fit.rows[ar_pos])}
        fit_labels = fit.ar_label[ar_pos][[order[int(r)] for r in ar_fit.rows]]
    lat = read_latents(store, sel.rows)
    where = {int(r): i for i, r in enumerate(sel.rows)}
    at = np.asarray([where[int(r)] for r in lat.rows], dtype=np.int64)
    sel_groups = scatter_groups(sel, ("ar",), num_actions)
    data = selection_data(lat, sel_groups[at], sel.ar_label[at], ar_fit, fit_labels)

    def video_of(first: EraserDirections | None, rank: int) -> EraserDirections:
        return video_eraser_directions(_scatter(store, fit, fit_groups, first, rank))

    return Fold(data=data, video_of=video_of, static=_static_directions(store, fit))


def fit_video_eraser(
    store: Any,
    train: VideoRoles,
    tasks: tuple[str, ...],
    *,
    folds: int = FOLDS,
    max_selection: int = 512,
) -> tuple[EraserDirections, RankChoice]:
    """Fit the video eraser's directions on every training video and choose its ranks by
    cross-fitting over ``folds`` folds of them (video ``i`` is held out in fold
    ``i % folds``, at most ``max_selection`` held-out videos in all). With AR unseen
    there is nothing to guard the choice, no fold is scored and the rank follows the
    variance ratio."""
    train = train.select(train.clip_count >= 1)
    groups = scatter_groups(train, tasks, len(store.label_spaces.actions))
    k = min(folds, len(train) // 2)
    parts: list[Fold] = []
    if "ar" in tasks and k >= 2:
        fold_of = np.arange(len(train)) % k
        per_fold = -(-max_selection // k)
        parts = [_fold(store, train, groups, fold_of == f, per_fold) for f in range(k)]
    selection = f"{k}-fold cross-fitting over the training videos" if parts else "none"
    static = _static_directions(store, train)
    two_stage = static is not None and all(f.static is not None for f in parts)
    if two_stage and guarded(parts):
        choice = select_two_stage(parts, static, selection=selection, dim=store.feature_dim)
        r1 = choice.static_rank
        video = video_eraser_directions(_scatter(store, train, groups, static, r1))
        directions = compose(static, r1, video) if r1 else video
    else:  # no static clips, or nothing to guard a static stage: the video stage alone
        directions = video_eraser_directions(_scatter(store, train, groups))
        grid = rank_grid(store.feature_dim)
        choice = select_rank(parts, directions, selection=selection, grid=grid)
    log.info(
        "video eraser: rank %d of %d, %d of them static-clip axes (%s; %s)",
        choice.rank,
        store.feature_dim,
        choice.static_rank,
        choice.rule,
        selection,
    )
    return directions, choice
