"""How far a utility figure can be trusted: its spread over eval seeds and a bootstrap
interval over test videos.

The TAD and AD test sets of the demo corpora hold 10–20 videos, so a 2-point change cannot be
told from noise by one run. Each utility task runs once per eval seed (``seed, seed+1, ...``)
and keeps, per run, what every test video contributed (:class:`Scored`). From those:

- ``mean`` and ``std`` (sample, ddof=1) over the seeds;
- ``ci95``: a percentile bootstrap over test videos of the seed-mean figure (videos drawn with
  replacement, each draw scored on every seed's predictions and averaged);
- with a reference store, ``change``: the same bootstrap, paired (each draw takes the same
  videos from both stores), of store minus reference, so the interval is of the drop itself.
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


def tad_scorer(entries: Sequence[Any]) -> float:
    """Average mAP from per-video ``(detections, ground truth)``; a video drawn twice counts
    as two videos, so each draw gets its own id."""
    preds, gts = [], []
    for k, (dets, gt) in enumerate(entries):
        preds += [(k, s, e, c, p) for s, e, c, p in dets]
        gts += [(k, s, e, c) for s, e, c in gt]
    return float(metrics.tad_map(preds, gts)["avg"]) if gts else float("nan")


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


def _alone(runs: Sequence[Scored], rng: np.random.Generator) -> dict[str, Any]:
    """Seed spread and the bootstrap interval of one store's figure."""
    values = np.array([r.value for r in runs], dtype=np.float64)
    n = len(runs[0].ids)
    interval = None
    if n:
        draws = rng.integers(0, n, size=(BOOTSTRAP_DRAWS, n))
        interval = _interval(_draw_score(runs, range(n), draws))
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "per_seed": values.tolist(),
        "ci95": interval,
        "num_seeds": len(runs),
    }


def summarize(
    runs: Sequence[Scored], reference: Sequence[Scored] | None = None, *, seed: int = 0
) -> dict[str, Any]:
    """Seed spread and bootstrap intervals of one task on a store (and its reference).

    Returns ``{"mean", "std", "per_seed", "ci95", "num_seeds", "draws"}`` and, with
    ``reference``, ``"reference": {the same}`` and ``"change": {"mean", "ci95",
    "paired_videos"}``: store minus reference, paired over the test videos both hold.
    """
    rng = np.random.default_rng(seed)
    out = {**_alone(runs, rng), "draws": BOOTSTRAP_DRAWS}
    if not reference:
        return out
    out["reference"] = _alone(reference, rng)
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
    out["change"] = change
    return out
