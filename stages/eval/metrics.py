"""Evaluation metrics in plain numpy: detection mAP, frame AUC, AP / cMAP, F1, chance levels.

Every function takes arrays (not stores) and returns Python floats. Definitions follow the tools
the field reports with, so numbers are comparable to published ones:

- :func:`tad_map` is ActivityNet / ActionFormer's temporal-detection mAP (``ANETdetection`` in
  ``actionformer_release/libs/utils/metrics.py``).
- :func:`frame_auc` is RTFM's frame-level ROC AUC (segment scores repeated 16x per frame).
- :func:`roc_auc` and :func:`average_precision` equal ``sklearn.metrics.roc_auc_score`` and
  ``average_precision_score`` (ties included), without depending on scikit-learn.
- :func:`cmap` is the paper's privacy metric: class-wise mean AP over the values of one attribute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "TIOUS",
    "accuracy",
    "average_precision",
    "chance_accuracy",
    "chance_cmap",
    "cmap",
    "frame_auc",
    "interpolated_ap",
    "leakage_reduction",
    "macro_f1",
    "roc_auc",
    "segment_iou",
    "tad_map",
]

TIOUS = np.linspace(0.3, 0.7, 5)
"""THUMOS14 tIoU thresholds used by ActionFormer: 0.3, 0.4, 0.5, 0.6, 0.7."""

_PRED_FIELDS = ("video_id", "t_start", "t_end", "label", "score")
_GT_FIELDS = ("video_id", "t_start", "t_end", "label")


# --------------------------------------------------------------------------- ranking metrics


def _ranked_counts(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score threshold, highest first."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but scores has {s.size}")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: tied samples enter the curve together.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of binary labels (NaN when only one class is present).

    Tied scores form one operating point, as in ``sklearn.metrics.roc_curve`` + ``auc``.
    """
    if np.asarray(y_true).size == 0:
        return float("nan")
    tps, fps = _ranked_counts(y_true, scores)
    if tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # trapezoid rule


def average_precision(y_true_binary: np.ndarray, scores: np.ndarray) -> float:
    """Non-interpolated average precision, as ``sklearn.metrics.average_precision_score``.

    AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds. NaN when there is no positive.
    """
    if np.asarray(y_true_binary).size == 0:
        return float("nan")
    tps, fps = _ranked_counts(y_true_binary, scores)
    if tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def cmap(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Class-wise mean AP of ``proba[:, k]`` for ``y_true == k``, over classes present in y_true.

    Parameters
    ----------
    y_true : int array [N]
        Attribute value codes in ``[0, K)``.
    proba : float array [N, K]
        Scores per value (probabilities or any monotone score).
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"proba must be [N={y.size}, K], got shape {p.shape}")
    present = [k for k in np.unique(y) if 0 <= k < p.shape[1]]
    if not present:
        return float("nan")
    return float(np.mean([average_precision(y == k, p[:, k]) for k in present]))


def chance_cmap(y_true: np.ndarray) -> float:
    """Expected cMAP of a scorer that ignores the input: mean prevalence of the present classes.

    A random ranking has expected AP close to the positive rate (exactly so as N grows).
    """
    y = np.asarray(y_true).ravel()
    if y.size == 0:
        return float("nan")
    _, counts = np.unique(y, return_counts=True)
    return float(np.mean(counts / y.size))


# ----------------------------------------------------------------------- classification metrics


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches."""
    y, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} entries but y_pred has {p.size}")
    return float(np.mean(y == p)) if y.size else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the labels seen in y_true or y_pred (sklearn ``average='macro'``)."""
    y, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} entries but y_pred has {p.size}")
    if y.size == 0:
        return float("nan")
    f1 = []
    for k in np.union1d(y, p):
        tp = np.sum((y == k) & (p == k))
        fp = np.sum((y != k) & (p == k))
        fn = np.sum((y == k) & (p != k))
        f1.append(2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(f1))


def chance_accuracy(y: np.ndarray, y_train: np.ndarray | None = None) -> float:
    """Accuracy on ``y`` of always answering the majority class.

    The majority class is taken from ``y_train`` when given (a trivial attacker fitted on the
    training split), otherwise from ``y`` itself (the best constant answer, a stricter chance).
    """
    y = np.asarray(y).ravel()
    if y.size == 0:
        return float("nan")
    ref = y if y_train is None else np.asarray(y_train).ravel()
    values, counts = np.unique(ref, return_counts=True)
    majority = values[np.argmax(counts)]
    return float(np.mean(y == majority))


def leakage_reduction(raw: float, anon: float, chance: float) -> float | None:
    """Share of the above-chance leakage removed: ``(raw - anon) / (raw - chance)``.

    1.0 means the anonymized store leaks no more than chance, 0.0 no change. None when the raw
    store does not leak (``raw <= chance``) or an input is missing, since the ratio is undefined.
    """
    if raw is None or anon is None or chance is None:
        return None
    raw, anon, chance = float(raw), float(anon), float(chance)
    if not np.isfinite([raw, anon, chance]).all() or raw <= chance:
        return None
    return (raw - anon) / (raw - chance)


# ---------------------------------------------------------------------------- anomaly detection


def frame_auc(
    scores_per_video: Sequence[np.ndarray],
    labels_per_video: Sequence[np.ndarray],
    frames_per_segment: int = 16,
) -> float:
    """Frame-level ROC AUC of anomaly scores, aligned as RTFM/MGFN evaluate UCF-Crime.

    Each video's segment scores are repeated ``frames_per_segment`` times (``np.repeat``) and
    concatenated in list order; the frame labels are concatenated likewise.

    Parameters
    ----------
    scores_per_video : list of float arrays [T_i]
        One score per segment (clip) of each video.
    labels_per_video : list of 0/1 arrays [T_i * frames_per_segment]
        Frame-level ground truth, one entry per frame covered by the segments.
    frames_per_segment : int
        Frames represented by one segment score (16 in RTFM).
    """
    if len(scores_per_video) != len(labels_per_video):
        raise ValueError(
            f"{len(scores_per_video)} score vectors but {len(labels_per_video)} label vectors"
        )
    preds, gts = [], []
    for i, (s, g) in enumerate(zip(scores_per_video, labels_per_video, strict=True)):
        s, g = np.asarray(s, dtype=np.float64).ravel(), np.asarray(g).ravel()
        if g.size != s.size * frames_per_segment:
            # An off-by-one in T silently shifts every later video, so refuse it here.
            raise ValueError(
                f"video {i}: {s.size} segment scores need {s.size * frames_per_segment} frame "
                f"labels (T * {frames_per_segment}), got {g.size}"
            )
        preds.append(np.repeat(s, frames_per_segment))
        gts.append(g)
    if not preds:
        return float("nan")
    return roc_auc(np.concatenate(gts), np.concatenate(preds))


# --------------------------------------------------------------------- temporal action detection


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Temporal IoU of one ``[start, end]`` segment with each row of ``candidates`` [M, 2]."""
    target = np.asarray(target, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    inter = (
        np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])
    ).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        tiou = inter / union
    return np.nan_to_num(tiou, nan=0.0, posinf=0.0, neginf=0.0)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC2011 / ActivityNet interpolated AP: area under the monotone envelope of P(R)."""
    mprec = np.r_[0.0, np.asarray(precision, dtype=np.float64), 0.0]
    mrec = np.r_[0.0, np.asarray(recall, dtype=np.float64), 1.0]
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _columns(rows: Any, fields: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """Accept a mapping of columns, a structured array or a sequence of tuples."""
    if isinstance(rows, Mapping):
        out = {}
        for f in fields:
            key = f if f in rows else f.replace("_", "-")  # ActionFormer spells "video-id"
            if key not in rows:
                raise ValueError(f"{what} has no column {f!r}; columns: {sorted(rows)}")
            out[f] = np.asarray(rows[key])
    elif isinstance(rows, np.ndarray) and rows.dtype.names:
        missing = [f for f in fields if f not in rows.dtype.names]
        if missing:
            raise ValueError(f"{what} has no fields {missing}; fields: {rows.dtype.names}")
        out = {f: np.asarray(rows[f]) for f in fields}
    else:
        rows = list(rows)
        if any(len(r) != len(fields) for r in rows):
            raise ValueError(f"every {what} row must be ({', '.join(fields)})")
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
        out = {f: np.asarray(c) for f, c in zip(fields, cols, strict=True)}
    n = {len(v) for v in out.values()}
    if len(n) > 1:
        raise ValueError(f"{what} columns have different lengths: {sorted(n)}")
    return out


def _class_ap(
    gt: dict[str, np.ndarray], pred: dict[str, np.ndarray], tious: np.ndarray
) -> np.ndarray:
    """AP per tIoU threshold for one class (ANET's compute_average_precision_detection)."""
    ap = np.zeros(len(tious))
    n_pred, n_pos = len(pred["score"]), len(gt["video_id"])
    if n_pred == 0 or n_pos == 0:
        return ap
    gt_by_video: dict[Any, np.ndarray] = {}
    gt_seg = np.stack([gt["t_start"], gt["t_end"]], axis=1).astype(np.float64)
    for v in np.unique(gt["video_id"]):
        gt_by_video[v] = np.flatnonzero(gt["video_id"] == v)
    # Highest score first; stable on the reversed order, as ANET's argsort()[::-1] on small input.
    order = np.argsort(pred["score"], kind="stable")[::-1]
    tp = np.zeros((len(tious), n_pred))
    fp = np.zeros((len(tious), n_pred))
    locked = np.zeros((len(tious), n_pos), dtype=bool)
    for rank, i in enumerate(order):
        rows = gt_by_video.get(pred["video_id"][i])
        if rows is None:
            fp[:, rank] = 1
            continue
        tiou = segment_iou((pred["t_start"][i], pred["t_end"][i]), gt_seg[rows])
        by_tiou = np.argsort(tiou, kind="stable")[::-1]
        for t, thr in enumerate(tious):
            # The best-overlapping ground truth not yet taken at this threshold.
            for j in by_tiou:
                if tiou[j] < thr:
                    break
                if not locked[t, rows[j]]:
                    locked[t, rows[j]] = True
                    tp[t, rank] = 1
                    break
            fp[t, rank] = 1 - tp[t, rank]
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall = tp_c / n_pos
    precision = tp_c / (tp_c + fp_c)
    for t in range(len(tious)):
        ap[t] = interpolated_ap(precision[t], recall[t])
    return ap


def _tiou_key(t: float) -> str:
    return f"{round(float(t), 4):g}"


def tad_map(predictions: Any, ground_truth: Any, tious: np.ndarray = TIOUS) -> dict[str, Any]:
    """Temporal action detection mAP, as ActivityNet / ActionFormer compute it.

    Per class, detections are sorted by score and each is matched greedily to the unmatched
    ground-truth segment of the same video with the highest tIoU >= threshold (else it is a false
    positive); AP is the interpolated area under precision/recall. mAP averages over the classes
    that have ground truth: a class never detected contributes 0, detections of classes without
    ground truth are ignored. Tied scores keep ANET's small-input order (later row first).

    Parameters
    ----------
    predictions : rows ``(video_id, t_start, t_end, label, score)``
        A sequence of tuples, a structured array with those field names, or a mapping of columns
        (ActionFormer's ``video-id``/``t-start``/``t-end`` spellings are accepted).
    ground_truth : rows ``(video_id, t_start, t_end, label)``
        Same accepted forms. Times in seconds (any consistent unit).
    tious : float array
        tIoU thresholds; default 0.3:0.1:0.7.

    Returns
    -------
    dict
        ``{"map": {"0.3": float, ...}, "avg": float, "per_class": {label: [AP per threshold]},
        "tious": [float, ...]}``. Values are fractions in [0, 1]; NaN when there is no ground truth.
    """
    tious = np.asarray(tious, dtype=np.float64).ravel()
    gt = _columns(ground_truth, _GT_FIELDS, "ground_truth")
    pred = _columns(predictions, _PRED_FIELDS, "predictions")
    labels = np.unique(gt["label"]) if len(gt["label"]) else np.array([])
    per_class: dict[Any, list[float]] = {}
    aps = np.zeros((len(tious), len(labels)))
    for c, label in enumerate(labels):
        gsel = gt["label"] == label
        psel = pred["label"] == label if len(pred["label"]) else np.zeros(0, dtype=bool)
        aps[:, c] = _class_ap(
            {k: v[gsel] for k, v in gt.items()},
            {k: v[psel] for k, v in pred.items()},
            tious,
        )
        per_class[label.item() if hasattr(label, "item") else label] = aps[:, c].tolist()
    if len(labels):
        m = aps.mean(axis=1)
    else:
        m = np.full(len(tious), np.nan)
    return {
        "map": {_tiou_key(t): float(v) for t, v in zip(tious, m, strict=True)},
        "avg": float(m.mean()) if len(m) else float("nan"),
        "per_class": per_class,
        "tious": [float(t) for t in tious],
    }
