"""RTFM / MGFN layout: per-video ``[T, crops, C]`` features, list files and the frame GT.

Exports the store's ``ad`` videos (see :mod:`._anomaly` for the lists and the ground truth)::

    OUT/
      features/<video_id>_i3d.npy   float32 [T, crops, C]; T = the video's clips in store order;
                                    crops = 1 by default (the store holds one view per clip;
                                    with --crops k the view is repeated k times)
      list/ucf-i3d.list             training features, absolute paths, abnormal videos first
      list/ucf-i3d-test.list        test features, absolute paths, abnormal videos first
      list/gt-ucf.npy               float32 frame labels over the test list in list order,
                                    T * 16 per video (RTFM repeats each clip score 16 times)
      missing_files.txt             ad videos left out (no features or no video label)
      README.md                     the flags and the one constant to set
      aamflow_export.json

RTFM and MGFN read ``[T, crops, C]`` with any number of crops (they average over crops at test
time), so one crop is the faithful export of a single-view store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aamflow.schemas.store import FeatureStore

from ._anomaly import anomaly_lists, features, write_lists_and_truth
from ._common import EXPORTERS, Exporter, Target, save_npy, write_text

TRAIN_LIST = "list/ucf-i3d.list"
TEST_LIST = "list/ucf-i3d-test.list"
GT_FILE = "list/gt-ucf.npy"


def feature_file(video_id: str) -> str:
    """Relative path of a video's feature file (RTFM's ``<name>_i3d.npy`` naming)."""
    return f"features/{video_id}_i3d.npy"


def write_rtfm(
    store: FeatureStore, target: Target, *, crops: int | None = 1, quiet: bool = False
) -> dict[str, Any]:
    """Write the RTFM / MGFN layout of the store's ``ad`` videos into ``target``."""
    from tqdm.auto import tqdm

    crops = 1 if crops is None else int(crops)
    lists = anomaly_lists(store)
    frame_labels: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    test_ids = {v.id for v in lists.test}
    for video in tqdm(lists.train + lists.test, desc="export rtfm", disable=quiet):
        feats, labels = features(store, video)
        save_npy(
            target.path(feature_file(video.id)),
            np.repeat(feats[:, None, :], crops, axis=1),
        )
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
        files_of=lambda v: [feature_file(v.id)],
        crops=crops,
        lengths=lengths,
    )
    write_text(target.path("README.md"), _readme(target, summary))
    return summary


def _readme(target: Target, s: dict[str, Any]) -> str:
    root = target.final
    return f"""# aamflow export: RTFM / MGFN layout

{s["train_videos"]} training and {s["test_videos"]} test anomaly videos; one float32
`[T, {s["crops"]}, {s["input_dim"]}]` file per video, T = the video's dense clips in order
(clip stride {s["feat_stride"]} frames, {s["num_frames"]} frames per clip; never padded or cut).
`list/gt-ucf.npy` holds {s["gt_length"]} frame labels: T x 16 per test video, in test-list order,
built from the frames each clip was decoded from.

The training list holds the **{s["train_abnormal"]} abnormal videos first**, then
{s["train_videos"] - s["train_abnormal"]} normal ones. RTFM and MGFN cut that list at a
hard-coded index in `dataset.py` (`self.list[63:]` / `self.list[:63]` in RTFM, 63 for
ShanghaiTech and 810 for UCF-Crime in its variants; 810 in MGFN): set it to
**{s["train_abnormal"]}**.

RTFM:

```bash
python main.py --rgb-list {root}/list/ucf-i3d.list \\
  --test-rgb-list {root}/list/ucf-i3d-test.list --gt {root}/list/gt-ucf.npy \\
  --feature-size {s["input_dim"]}
```

MGFN (`--datasetname UCF`; its `models/mgfn.py` splits the input at channel 2048,
`x[:, :2048]` / `x[:, 2048:]`, to separate the magnitude channel it appends: set that to
{s["input_dim"]}):

```bash
python main.py --rgb-list {root}/list/ucf-i3d.list \\
  --test-rgb-list {root}/list/ucf-i3d-test.list --gt {root}/list/gt-ucf.npy \\
  --feature_size {s["input_dim"]} --datasetname UCF
```

The list files hold absolute paths to `{root}/features`; re-export rather than move the folder.
"""


EXPORTERS.register("rtfm")(
    Exporter(
        name="rtfm",
        description="RTFM / MGFN: per-video [T, crops, C] .npy, list files, frame GT",
        default_crops=1,
        write=write_rtfm,
    )
)
