"""Utility of one store: task heads trained from scratch on its features, scored on test videos.

- AR: a linear probe (``fit_ar_probe``) on the clips of train/val ``ar`` videos of subset
  ``main``; a test video's prediction is the mean of its clip probabilities; top-1.
- TAD: the detection head (``fit_tad_head``) on the clip sequences ``[T, D]`` of train/val
  ``tad`` videos, segments converted to timesteps with the shared helpers; detections are
  converted back to seconds, clipped to the video, and scored with ActionFormer's mAP at
  tIoU 0.3:0.1:0.7 (:func:`~.metrics.tad_map`).
- AD: the MIL head (``fit_ad_head``) on train/val ``ad`` videos with their video labels;
  every clip of a test video is scored and the frame-level ROC AUC is computed as RTFM does:
  scores repeated ``clip_len`` times against the frames each clip covers (see
  :mod:`.alignment`).
- Bias: the AR probe trained on the skewed train/val videos of subset ``bias`` and scored on
  its balanced test videos, per group (``label_group``); the gap is max - min.

Every head is seeded; on the CPU the same seed gives the same figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from aamflow.schemas.store import FeatureStore
from aamflow.stages.models.ad_head import fit_ad_head, score_clips
from aamflow.stages.models.heads import fit_ar_probe, predict_video
from aamflow.stages.models.tad_head import (
    decode_tad,
    fit_tad_head,
    pad_videos,
    seconds_to_timesteps,
    timesteps_to_seconds,
)

from . import metrics
from .alignment import clip_frame_labels
from .data import (
    BIAS_SUBSET,
    MAIN_SUBSET,
    NO_PRIVATE_LABELS,
    TEST_SPLITS,
    TRAIN_SPLITS,
    clip_geometry,
    gather,
    select_videos,
    sequences,
)
from .errors import Skipped
from .spread import Scored, ad_scorer, ar_scorer, match_video, tad_scorer

_TAD_BATCH = 16  # test videos per forward pass of the TAD head


def _epochs(epochs: int | None) -> dict[str, int]:
    return {} if epochs is None else {"epochs": int(epochs)}


def _tensor(x: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _duration(video: Any) -> float:
    fps, n, d = float(video["fps"]), int(video["num_frames"]), float(video["duration"])
    if np.isfinite(d) and d > 0:
        return d
    return n / fps if fps > 0 and n > 0 else float("inf")


# ----------------------------------------------------------------------------------- AR


def _ar_predictions(
    store: FeatureStore, subset: str, *, seed: int, epochs: int | None, device: str
) -> tuple[Any, np.ndarray, int]:
    """Fit the AR probe on the subset's training clips; predicted class per test video."""
    pick = {"subset": subset, "labelled": "label_action"}
    if subset == MAIN_SUBSET:
        pick["task"] = "ar"
    train = select_videos(store, splits=TRAIN_SPLITS, **pick)
    test = select_videos(store, splits=TEST_SPLITS, **pick)
    if not len(train) or not len(test):
        which = "training" if not len(train) else "test"
        raise Skipped(f"no labelled {which} videos for the action probe (subset {subset})")
    num_classes = len(store.label_spaces.actions)
    x_train, owner = gather(store, "clip_features", train)
    y_train = store.videos["label_action"].loc[owner].to_numpy(np.int64)
    probe = fit_ar_probe(
        _tensor(x_train, device),
        _tensor(y_train, device),
        num_classes,
        seed=seed,
        **_epochs(epochs),
    )
    x_test, owner_test = gather(store, "clip_features", test)
    codes = pd.Index(test["row"]).get_indexer(owner_test)  # position of each clip's video
    proba = predict_video(probe, _tensor(x_test, device), _tensor(codes, device), len(test))
    return test, proba.argmax(dim=1).cpu().numpy(), len(train)


def ar_top1(store: FeatureStore, *, seed: int, epochs: int | None, device: str) -> dict[str, Any]:
    """Video-level top-1 of the AR linear probe on the store's test ``ar`` videos."""
    test, pred, n_train = _ar_predictions(
        store, MAIN_SUBSET, seed=seed, epochs=epochs, device=device
    )
    truth = test["label_action"].to_numpy(np.int64)
    top1 = metrics.accuracy(truth, pred)
    return {
        "top1": top1,
        "chance": metrics.chance_accuracy(truth),
        "num_train_videos": n_train,
        "num_test_videos": len(test),
        "scored": Scored(
            value=top1,
            ids=tuple(test["id"].tolist()),
            per_video=tuple((pred == truth).tolist()),
            score=ar_scorer,
        ),
    }


def bias_gap(store: FeatureStore, *, seed: int, epochs: int | None, device: str) -> dict[str, Any]:
    """Per-group AR top-1 on the ``bias`` subset's test videos and the gap between groups."""
    if not len(store.videos) or not (store.videos["subset"] == BIAS_SUBSET).any():
        raise Skipped(f"bias: the store has no videos of subset {BIAS_SUBSET!r}")
    if "label_group" not in store.videos.columns:
        raise Skipped(f"bias: {NO_PRIVATE_LABELS}")
    test, pred, n_train = _ar_predictions(
        store, BIAS_SUBSET, seed=seed, epochs=epochs, device=device
    )
    groups = store.label_spaces.groups
    truth = test["label_action"].to_numpy(np.int64)
    group = test["label_group"].to_numpy(np.int64)
    per_group = {
        name: metrics.accuracy(truth[group == code], pred[group == code])
        for code, name in enumerate(groups)
        if np.any(group == code)
    }
    if len(per_group) < 2:
        raise Skipped("bias: fewer than two groups among the bias subset's test videos")
    values = list(per_group.values())
    return {
        "per_group": per_group,
        "gap": max(values) - min(values),
        "top1": metrics.accuracy(truth, pred),
        "num_train_videos": n_train,
        "num_test_videos": len(test),
    }


# ---------------------------------------------------------------------------------- TAD


def _segments_in_timesteps(store: FeatureStore, videos: Any) -> list[list[tuple]]:
    """Each video's ground truth as ``(start_t, end_t, label)`` in the head's timesteps."""
    stride, span = clip_geometry(store, "tad")
    segs = store.segments
    by_video = {row: g for row, g in segs.groupby("video")} if len(segs) else {}
    out = []
    for _, v in videos.iterrows():
        g = by_video.get(int(v["row"]))
        fps = float(v["fps"])
        if g is None:
            out.append([])
            continue
        start = seconds_to_timesteps(g["start"].to_numpy(np.float64), fps, stride, span)
        end = seconds_to_timesteps(g["end"].to_numpy(np.float64), fps, stride, span)
        labels = g["label"].to_numpy(np.int64)
        out.append(
            [(float(s), float(e), int(c)) for s, e, c in zip(start, end, labels, strict=True)]
        )
    return out


def tad_map(store: FeatureStore, *, seed: int, epochs: int | None, device: str) -> dict[str, Any]:
    """ActionFormer mAP at tIoU 0.3:0.1:0.7 of the TAD head on the store's test ``tad`` videos."""
    train = select_videos(store, splits=TRAIN_SPLITS, task="tad", subset=None)
    test = select_videos(store, splits=TEST_SPLITS, task="tad", subset=None)
    if not len(train) or not len(test):
        raise Skipped(f"tad: no {'training' if not len(train) else 'test'} videos")
    train_segments = _segments_in_timesteps(store, train)
    if not any(train_segments):
        raise Skipped("tad: the training videos have no segments")
    gt = store.segments[store.segments["video"].isin(test["row"].tolist())]
    if not len(gt):
        raise Skipped("tad: the test videos have no segments")
    num_classes = len(store.label_spaces.actions)
    feats = [_tensor(f, device) for f in sequences(store, "clip_features", train)]
    head = fit_tad_head(feats, train_segments, num_classes, seed=seed, **_epochs(epochs))

    stride, span = clip_geometry(store, "tad")
    ids = dict(zip(test["row"].tolist(), test["id"].tolist(), strict=True))
    test_feats = sequences(store, "clip_features", test)
    rows = list(test.itertuples(index=False))
    predictions = []
    per_video: dict[str, list[tuple]] = {v: [] for v in ids.values()}
    for lo in range(0, len(rows), _TAD_BATCH):
        batch = rows[lo : lo + _TAD_BATCH]
        x, mask = pad_videos([_tensor(f, device) for f in test_feats[lo : lo + _TAD_BATCH]])
        with torch.no_grad():
            dets = decode_tad(*head(x.float(), mask), mask)
        for video, video_dets in zip(batch, dets, strict=True):
            fps, duration = float(video.fps), _duration(video._asdict())
            for start_t, end_t, score, label in video_dets:
                start = max(0.0, timesteps_to_seconds(start_t, fps, stride, span))
                end = min(duration, timesteps_to_seconds(end_t, fps, stride, span))
                if end > start:
                    predictions.append((video.id, start, end, label, score))
                    per_video[video.id].append((start, end, label, score))
    ground_truth = [
        (ids[int(r.video)], float(r.start), float(r.end), int(r.label))
        for r in gt.itertuples(index=False)
    ]
    gt_per_video: dict[str, list[tuple]] = {v: [] for v in ids.values()}
    for video_id, start, end, label in ground_truth:
        gt_per_video[video_id].append((start, end, label))
    result = metrics.tad_map(predictions, ground_truth)
    order = tuple(ids.values())
    return {
        "scored": Scored(
            value=float(result["avg"]),
            ids=order,
            per_video=tuple(match_video(per_video[v], gt_per_video[v]) for v in order),
            score=tad_scorer,
        ),
        "map": result["map"],
        "avg": result["avg"],
        "num_train_videos": len(train),
        "num_test_videos": len(test),
        "num_test_segments": len(ground_truth),
        "num_detections": len(predictions),
    }


# ----------------------------------------------------------------------------------- AD


def ad_auc(store: FeatureStore, *, seed: int, epochs: int | None, device: str) -> dict[str, Any]:
    """Frame-level ROC AUC of the MIL head on the store's test ``ad`` videos (RTFM protocol)."""
    pick = {"task": "ad", "subset": None, "labelled": "label_anomaly"}
    train = select_videos(store, splits=TRAIN_SPLITS, **pick)
    test = select_videos(store, splits=TEST_SPLITS, **pick)
    if not len(train) or not len(test):
        raise Skipped(f"ad: no labelled {'training' if not len(train) else 'test'} videos")
    labels = train["label_anomaly"].to_numpy(np.int64)
    if len(np.unique(labels)) < 2:
        raise Skipped("ad: the training videos are all normal or all abnormal")
    feats = [_tensor(f, device) for f in sequences(store, "clip_features", train)]
    head = fit_ad_head(feats, labels.tolist(), seed=seed, **_epochs(epochs))

    clip_len = int(store.meta.get("clip_len", store.sampling.get("clip_len", 16)))
    test_feats = sequences(store, "clip_features", test)
    frame_idx = sequences(store, "clip_frame_idx", test)
    frame_labels = _frame_labels(store, test)
    scores, truth = [], []
    for f, idx, fl, video_label in zip(
        test_feats, frame_idx, frame_labels, test["label_anomaly"].tolist(), strict=True
    ):
        scores.append(score_clips(head, _tensor(f, device)).cpu().numpy())
        truth.append(clip_frame_labels(fl, idx, clip_len, video_label))
    auc = metrics.frame_auc(scores, truth, frames_per_segment=clip_len)
    return {
        "auc": auc,
        "scored": Scored(
            value=auc,
            ids=tuple(test["id"].tolist()),
            per_video=tuple(zip(scores, truth, strict=True)),
            score=ad_scorer(clip_len),
        ),
        "frames_per_segment": clip_len,
        "num_train_videos": len(train),
        "num_test_videos": len(test),
        "num_test_abnormal": int(np.sum(test["label_anomaly"].to_numpy() > 0)),
    }


def _frame_labels(store: FeatureStore, videos: Any) -> list[np.ndarray]:
    """Per-video frame labels (empty arrays for videos that stored none)."""
    with_labels = videos[videos["frame_count"] > 0]
    stored = dict(
        zip(
            with_labels["row"].tolist(),
            sequences(store, "frame_labels", with_labels),
            strict=True,
        )
    )
    return [stored.get(int(r), np.zeros(0, np.int8)) for r in videos["row"]]
