"""UR-DMU layout: one ``[T, C]`` file per crop, list files with crops consecutive, frame GT.

Exports the store's ``ad`` videos (see :mod:`._anomaly` for the lists and the ground truth)::

    OUT/
      features/Abnormal/<video_id>__<k>.npy          float32 [T, C], k = 0 .. crops-1
      features/Normal/Normal_<video_id>__<k>.npy
      list/UCF_Train.list     absolute paths, abnormal videos first, a video's crops consecutive
      list/UCF_Test.list      the same for test videos
      frame_label/gt-ucf.npy  float32 frame labels over the test list, T * 16 per video
      missing_files.txt       ad videos left out (no features or no video label)
      README.md
      aamflow_export.json

UR-DMU derives the label from the file name (``"Normal" in name`` means normal), so normal
videos are named ``Normal_<id>`` and an abnormal id's ``Normal`` is written ``normal``. Its test
loop averages every 10 consecutive list entries (``(i + 1) % 10``), so the default is 10 crops;
the store holds one view per clip, and the 10 crop files are hard links to one file (a copy
where the file system cannot link), so they cost the disk space of one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aamflow.schemas.store import FeatureStore

from ._anomaly import AnomalyVideo, anomaly_lists, features, write_lists_and_truth
from ._common import (
    EXPORTERS,
    Exporter,
    Target,
    link_or_copy,
    save_npy,
    write_text,
)

DEFAULT_CROPS = 10  # UR-DMU's test loop groups 10 consecutive entries per video
TRAIN_LIST = "list/UCF_Train.list"
TEST_LIST = "list/UCF_Test.list"
GT_FILE = "frame_label/gt-ucf.npy"


def crop_files(video: AnomalyVideo, crops: int) -> list[str]:
    """Relative paths of a video's crop files, ``<Class>/<name>__<k>.npy``."""
    if video.abnormal:
        folder, name = "Abnormal", video.id.replace("Normal", "normal")
    else:
        folder, name = "Normal", f"Normal_{video.id}"
    return [f"features/{folder}/{name}__{k}.npy" for k in range(crops)]


def write_urdmu(
    store: FeatureStore, target: Target, *, crops: int | None = DEFAULT_CROPS, quiet: bool = False
) -> dict[str, Any]:
    """Write the UR-DMU layout of the store's ``ad`` videos into ``target``."""
    from tqdm.auto import tqdm

    crops = DEFAULT_CROPS if crops is None else int(crops)
    lists = anomaly_lists(store)
    frame_labels: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    test_ids = {v.id for v in lists.test}
    for video in tqdm(lists.train + lists.test, desc="export urdmu", disable=quiet):
        feats, labels = features(store, video)
        files = crop_files(video, crops)
        first = target.path(files[0])
        save_npy(first, feats)
        for extra in files[1:]:
            link_or_copy(first, target.path(extra))
        lengths[video.id] = int(feats.shape[0])
        if video.id in test_ids:
            frame_labels[video.id] = labels
    summary = write_lists_and_truth(
        target,
        store,
        lists,
        frame_labels,
        list_names=(TRAIN_LIST, TEST_LIST),
        gt_file=GT_FILE,
        files_of=lambda v: crop_files(v, crops),
        crops=crops,
        lengths=lengths,
    )
    write_text(target.path("README.md"), _readme(target, summary))
    return summary


def _readme(target: Target, s: dict[str, Any]) -> str:
    root = target.final
    return f"""# aamflow export: UR-DMU layout

{s["train_videos"]} training and {s["test_videos"]} test anomaly videos; {s["crops"]} crop
files per video, each float32 `[T, {s["input_dim"]}]`, T = the video's dense clips in order
(clip stride {s["feat_stride"]} frames, {s["num_frames"]} frames per clip; never padded or cut).
The store holds one view per clip: the crop files are identical (hard links).
`frame_label/gt-ucf.npy` holds {s["gt_length"]} frame labels: T x 16 per test video, in
test-list order.

To run UR-DMU (`ucf_main.py`), from its checkout:

1. copy or link `{root}/list/UCF_Train.list`, `{root}/list/UCF_Test.list` into `list/` and
   `{root}/frame_label/gt-ucf.npy` into `frame_label/` (it opens these relative paths);
2. in `dataset_loader.py` (`UCF_crime`), set the training-list cut from 8100 to
   **{s["train_abnormal"] * s["crops"]}** ({s["train_abnormal"]} abnormal videos x
   {s["crops"]} crops; abnormal entries come first);
3. in `ucf_main.py` set `config.len_feature = {s["input_dim"]}` (1024 for UCF-Crime I3D RGB).

Its training loaders use `batch_size = 64, drop_last = True` over list entries: each of the
normal and abnormal parts needs at least 64 entries ({s["crops"]} per video), or lower the batch.

The list files hold absolute paths to `{root}/features`; re-export rather than move the folder.
"""


EXPORTERS.register("urdmu")(
    Exporter(
        name="urdmu",
        description="UR-DMU: per-crop [T, C] .npy in Normal/Abnormal folders, lists, frame GT",
        default_crops=DEFAULT_CROPS,
        write=write_urdmu,
    )
)
