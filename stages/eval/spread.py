"""How far a utility or privacy figure can be trusted: its spread over eval seeds and a
bootstrap interval over test videos.

The TAD and AD test sets of the demo corpora hold 10–20 videos, so a 2-point change cannot be
told from noise by one run. Each utility task runs once per eval seed (``seed, seed+1, ...``)
and keeps, per run, what every test video contributed (:class:`Scored`). From those:

- ``mean`` and ``std`` (sample, ddof=1) over the seeds;
- ``ci95``: a percentile bootstrap over test videos of the seed-mean figure (videos drawn with
  replacement, each draw scored on every seed's predictions and averaged);
- with a reference store, ``change``: the same bootstrap, paired (each draw takes the same
  videos from both stores), of store minus reference, so the interval is of the drop itself.

Privacy (``leakage_intervals``): the attackers are trained once, and their test scores are
resampled by video (a video's clips go together): the strongest attacker's cMAP above
chance on each store and, paired, the leakage reduction. A gait test set of ~40 videos
moves the reduction by tens of points, so a reduction is read with its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics

BOOTSTRAP_DRAWS = 1000  # resamples of the test videos
INTERVAL = (2.5, 97.5)  # percentiles of the 95% interval


@dataclass(frozen=True, kw_only=True)
class Scored:
    """One task's figure on one seed, and what each test video contributed to it.

    ``ids`` name the test videos (the pairing key between a store and its reference);
    ``per_video`` holds one entry per video that ``score`` turns back into the figure.
    """

    value: float
    ids: tuple[str, ...]
    per_video: tuple[Any, ...]
    score: Callable[[Sequence[Any]], float]


def ar_scorer(entries: Sequence[bool]) -> float:
    """AR top-1 from per-video correctness."""
    return float(np.mean(entries)) if len(entries) else float("nan")


def ad_scorer(frames_per_segment: int) -> Callable[[Sequence[Any]], float]:
    """Frame AUC from per-video ``(clip scores, frame labels)``."""

    def score(entries: Sequence[Any]) -> float:
        return metrics.frame_auc(
            [e[0] for e in entries], [e[1] for e in entries], frames_per_segment
        )

    return score


@dataclass(frozen=True)
class Matched:
    """One test video's detections, matched to its own ground truth once: per class, the
    detections' scores and their true-positive flags per tIoU, and its ground-truth count."""

    per_class: dict[int, tuple[np.ndarray, np.ndarray]]  # label -> (scores [n], tp [T, n])
    gt_count: dict[int, int]


def match_video(
    detections: Sequence[tuple], ground_truth: Sequence[tuple], tious: np.ndarray = metrics.TIOUS
) -> Matched:
    """ANET's greedy matching restricted to one video: a detection only competes with the
    higher-scored detections of its own video and class for that video's segments, so its
    flags do not depend on which other videos a bootstrap draw holds."""
    tious = np.asarray(tious, dtype=np.float64)
    gt = np.asarray([(s, e, c) for s, e, c in ground_truth], dtype=np.float64).reshape(-1, 3)
    det = np.asarray(list(detections), dtype=np.float64).reshape(-1, 4)
    per_class, counts = {}, {}
    for label in np.unique(np.r_[gt[:, 2], det[:, 2]]).astype(int):
        segs = gt[gt[:, 2] == label, :2]
        mine = det[det[:, 2] == label]
        mine = mine[np.argsort(mine[:, 3], kind="stable")[::-1]]
        tp = np.zeros((len(tious), len(mine)), dtype=bool)
        taken = np.zeros((len(tious), len(segs)), dtype=bool)
        for i, (start, end, _, _) in enumerate(mine):
            if not len(segs):
                break
            tiou = metrics.segment_iou((start, end), segs)
            for t, thr in enumerate(tious):
                free = np.flatnonzero((tiou >= thr) & ~taken[t])
                if len(free):
                    j = free[np.argmax(tiou[free])]
                    taken[t, j] = tp[t, i] = True
        per_class[int(label)] = (mine[:, 3], tp)
        counts[int(label)] = len(segs)
    return Matched(per_class=per_class, gt_count=counts)


def tad_scorer(entries: Sequence[Matched]) -> float:
    """Average mAP (tIoU 0.3:0.7) of a draw of matched videos; a video drawn twice counts
    twice. Classes without ground truth in the draw are left out, as in ``tad_map``."""
    labels = sorted({c for e in entries for c, n in e.gt_count.items() if n})
    if not labels:
        return float("nan")
    aps = []
    for c in labels:
        got = [e.per_class[c] for e in entries if c in e.per_class]
        n_pos = sum(e.gt_count.get(c, 0) for e in entries)
        scores = np.concatenate([g[0] for g in got]) if got else np.zeros(0)
        if not len(scores):
            aps.append(np.zeros(len(metrics.TIOUS)))
            continue
        tp = np.concatenate([g[1] for g in got], axis=1)[:, np.argsort(-scores, kind="stable")]
        tp_c = np.cumsum(tp, axis=1)
        fp_c = np.cumsum(~tp, axis=1)
        precision, recall = tp_c / (tp_c + fp_c), tp_c / n_pos
        aps.append([metrics.interpolated_ap(p, r) for p, r in zip(precision, recall, strict=True)])
    return float(np.mean(aps))


def _draw_score(runs: Sequence[Scored], index: Sequence[int], draws: np.ndarray) -> np.ndarray:
    """Seed-mean figure of each bootstrap draw (rows of ``draws`` index ``index``)."""
    out = np.empty(len(draws))
    for b, draw in enumerate(draws):
        picked = [index[i] for i in draw]
        out[b] = np.mean([r.score([r.per_video[i] for i in picked]) for r in runs])
    return out


def _interval(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.percentile(values, INTERVAL)
    return [float(lo), float(hi)]


def _seeds(runs: Sequence[Scored]) -> dict[str, Any]:
    values = np.array([r.value for r in runs], dtype=np.float64)
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "per_seed": values.tolist(),
        "num_seeds": len(runs),
    }


def _bootstrap(runs: Sequence[Scored], rng: np.random.Generator) -> np.ndarray:
    n = len(runs[0].ids)
    return _draw_score(runs, range(n), rng.integers(0, n, size=(BOOTSTRAP_DRAWS, n)))


def summarize(
    runs: Sequence[Scored], reference: Sequence[Scored] | None = None, *, seed: int = 0
) -> dict[str, Any]:
    """Seed spread and bootstrap intervals of one task on a store (and its reference).

    Returns ``{"mean", "std", "per_seed", "ci95", "num_seeds", "draws"}`` and, with
    ``reference``, ``"reference": {the same}`` and ``"change": {"mean", "ci95",
    "paired_videos"}``: store minus reference, paired over the test videos both hold. When
    both stores scored the same videos, one set of draws serves all three intervals.
    """
    rng = np.random.default_rng(seed)
    out = {**_seeds(runs), "draws": BOOTSTRAP_DRAWS}
    if not reference:
        out["ci95"] = _interval(_bootstrap(runs, rng)) if runs[0].ids else None
        return out
    out["reference"] = _seeds(reference)
    ref_pos = {v: i for i, v in enumerate(reference[0].ids)}
    shared = [(i, ref_pos[v]) for i, v in enumerate(runs[0].ids) if v in ref_pos]
    change: dict[str, Any] = {
        "mean": out["mean"] - out["reference"]["mean"],
        "ci95": None,
        "paired_videos": len(shared),
    }
    if shared:
        draws = rng.integers(0, len(shared), size=(BOOTSTRAP_DRAWS, len(shared)))
        mine = _draw_score(runs, [s for s, _ in shared], draws)
        theirs = _draw_score(reference, [r for _, r in shared], draws)
        change["ci95"] = _interval(mine - theirs)
    if shared and len(shared) == len(runs[0].ids) == len(reference[0].ids):
        out["ci95"], out["reference"]["ci95"] = _interval(mine), _interval(theirs)
    else:
        out["ci95"] = _interval(_bootstrap(runs, rng)) if runs[0].ids else None
        has = bool(reference[0].ids)
        out["reference"]["ci95"] = _interval(_bootstrap(reference, rng)) if has else None
    out["change"] = change
    return out


def _video_positions(ids: np.ndarray) -> dict[Any, np.ndarray]:
    order = np.argsort(ids, kind="stable")
    uniq, starts = np.unique(ids[order], return_index=True)
    return dict(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))


def leakage_intervals(
    store: tuple[Any, np.ndarray, str],
    reference: tuple[Any, np.ndarray, str] | None = None,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap intervals over test videos of the strongest attacker's leakage.

    Each side is ``(Leakage, video id per scored row, strongest attacker)``. Returns
    ``{"leakage_ci95"}`` (cMAP above chance of the store's strongest attacker) and, with a
    reference, ``"reference_leakage_ci95"``, ``"reduction_ci95"`` (paired: each draw takes
    the same videos from both stores; chance from the reference's labels, as the point
    figure) and ``"paired_videos"``. Draws where the reference does not leak (reduction
    undefined) are left out of the reduction's interval; ``"undefined_draws"`` counts them.
    """
    rng = np.random.default_rng(seed)
    sides = [store] if reference is None else [store, reference]
    positions = [_video_positions(np.asarray(ids)) for _, ids, _ in sides]
    videos = sorted(set.intersection(*(set(p) for p in positions)), key=str)
    if not videos:
        return {}
    draws = rng.integers(0, len(videos), size=(BOOTSTRAP_DRAWS, len(videos)))
    leak = np.full((len(sides), BOOTSTRAP_DRAWS), np.nan)
    cmaps = np.full((len(sides), BOOTSTRAP_DRAWS), np.nan)
    chance_side = len(sides) - 1  # the reference's labels set chance, as the point figure
    chance = np.full(BOOTSTRAP_DRAWS, np.nan)
    for j, ((scored, _, name), pos) in enumerate(zip(sides, positions, strict=True)):
        per_video = [pos[v] for v in videos]
        for b, draw in enumerate(draws):
            rows = np.concatenate([per_video[i] for i in draw])
            labels = scored.labels[rows]
            if len(np.unique(labels)) < 2:
                continue  # cMAP of one class measures nothing
            cmaps[j, b] = metrics.cmap(labels, scored.proba[name][rows])
            own = metrics.chance_cmap(labels)
            leak[j, b] = cmaps[j, b] - own
            if j == chance_side:
                chance[b] = own
    out: dict[str, Any] = {"leakage_ci95": _interval(leak[0])}
    if reference is None:
        return out
    raw, anon = cmaps[1], cmaps[0]
    defined = raw > chance
    reduction = np.where(defined, (raw - anon) / np.where(defined, raw - chance, 1.0), np.nan)
    out.update(
        reference_leakage_ci95=_interval(leak[1]),
        reduction_ci95=_interval(reduction),
        paired_videos=len(videos),
        undefined_draws=int((~np.isfinite(reduction)).sum()),
    )
    return out
