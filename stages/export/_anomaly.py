"""What the anomaly formats (RTFM / MGFN, UR-DMU) share: video lists and frame ground truth.

- Videos: the store's ``ad`` videos with a known video label (``label_anomaly`` 0/1) and
  features. Train list = train + val videos, test list = test videos; each list holds its
  abnormal videos first, then the normal ones, each group in store order (RTFM, MGFN and
  UR-DMU split the training list at a fixed index: abnormal before it, normal after).
- Ground truth: one frame-label vector over the test list in list order, ``T * 16`` labels per
  video, aligned clip by clip as :mod:`aamflow.stages.eval.alignment` documents (the tools
  repeat each clip score 16 times).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aamflow.schemas.store import FeatureStore
from aamflow.stages.eval.alignment import RTFM_FRAMES_PER_SEGMENT, clip_frame_labels

from ._common import (
    CropPlan,
    Target,
    clip_geometry,
    is_exportable,
    safe_name,
    save_npy,
    videos_of,
    write_text,
)


@dataclass(frozen=True, kw_only=True)
class AnomalyVideo:
    row: int
    id: str
    abnormal: bool
    clip_start: int
    clip_count: int


@dataclass(frozen=True, kw_only=True)
class AnomalyLists:
    train: list[AnomalyVideo]  # abnormal first
    test: list[AnomalyVideo]  # abnormal first
    missing: list[str]  # ad videos left out: no features or no video label


def anomaly_lists(store: FeatureStore) -> AnomalyLists:
    """The train and test lists of the store's ``ad`` videos, abnormal first."""
    train: list[AnomalyVideo] = []
    test: list[AnomalyVideo] = []
    missing: list[str] = []
    for _, v in videos_of(store, "ad").iterrows():
        vid = safe_name(str(v["id"]))
        if not is_exportable(v) or int(v["label_anomaly"]) < 0:
            missing.append(vid)
            continue
        item = AnomalyVideo(
            row=int(v["row"]),
            id=vid,
            abnormal=int(v["label_anomaly"]) > 0,
            clip_start=int(v["clip_start"]),
            clip_count=int(v["clip_count"]),
        )
        (test if v["split"] == "test" else train).append(item)

    def abnormal_first(items: list[AnomalyVideo]) -> list[AnomalyVideo]:
        return [i for i in items if i.abnormal] + [i for i in items if not i.abnormal]

    return AnomalyLists(train=abnormal_first(train), test=abnormal_first(test), missing=missing)


def features(
    store: FeatureStore, video: AnomalyVideo, crops: CropPlan
) -> tuple[np.ndarray, np.ndarray]:
    """The video's float32 ``[T, crops, C]`` clip features (store order, the views ``crops``
    selects) and its frame labels."""
    view = store.video(video.row, all_crops=True)
    return crops.views(view.clip_features), view.frame_labels


def ground_truth(
    store: FeatureStore, videos: list[AnomalyVideo], frame_labels: dict[str, np.ndarray]
) -> np.ndarray:
    """float32 frame labels over ``videos`` in order, ``T * 16`` per video, aligned clip by clip
    (``frame_labels``: each video's stored per-frame labels, by id)."""
    if not videos:
        return np.zeros(0, np.float32)
    idx = np.concatenate([np.arange(v.clip_start, v.clip_start + v.clip_count) for v in videos])
    frame_idx = np.asarray(store.dask("clip_frame_idx")[idx])  # one read for all test videos
    bounds = np.cumsum([v.clip_count for v in videos])[:-1]
    parts = [
        clip_frame_labels(frame_labels[v.id], fi, RTFM_FRAMES_PER_SEGMENT, int(v.abnormal))
        for v, fi in zip(videos, np.split(frame_idx, bounds), strict=True)
    ]
    return np.concatenate(parts).astype(np.float32)


def counts(lists: AnomalyLists) -> dict[str, Any]:
    return {
        "train_videos": len(lists.train),
        "train_abnormal": sum(v.abnormal for v in lists.train),
        "test_videos": len(lists.test),
        "test_abnormal": sum(v.abnormal for v in lists.test),
        "missing": list(lists.missing),
    }


def write_lists_and_truth(
    target: Target,
    store: FeatureStore,
    lists: AnomalyLists,
    frame_labels: dict[str, np.ndarray],
    *,
    list_names: tuple[str, str],
    gt_file: str,
    files_of: Callable[[AnomalyVideo], list[str]],
    crops: CropPlan,
    lengths: dict[str, int],
) -> dict[str, Any]:
    """Write the train/test lists (a line per feature file), the frame ground truth and
    ``missing_files.txt``; return the export summary shared by the anomaly formats."""
    for name, items in zip(list_names, (lists.train, lists.test), strict=True):
        lines = "".join(f"{target.final_path(f)}\n" for v in items for f in files_of(v))
        write_text(target.path(name), lines)
    gt = ground_truth(store, lists.test, frame_labels)
    save_npy(target.path(gt_file), gt)
    write_text(target.path("missing_files.txt"), "".join(f"{m}\n" for m in lists.missing))
    return {
        **clip_geometry(store),
        **counts(lists),
        "crops": crops.count,
        "crops_repeated": crops.repeated,
        "frames_per_segment": 16,
        "gt_length": int(gt.size),
        "lengths": lengths,
    }
