"""RTFM / MGFN layout: per-video ``[T, crops, C]`` features, list files and the frame GT.

Exports the store's ``ad`` videos (see :mod:`._anomaly` for the lists and the ground truth)::

    OUT/
      features/<video_id>_i3d.npy   float32 [T, crops, C]; T = the video's clips in store order;
                                    crops = the store's (10 for a ten-crop store, 1 otherwise),
                                    1 with --crops 1 (the centre crop), or K copies of a
                                    one-crop store's view with --repeat-crops K
      list/ucf-i3d.list             training features, absolute paths, abnormal videos first
      list/ucf-i3d-test.list        test features, absolute paths, abnormal videos first
      list/gt-ucf.npy               float32 frame labels over the test list in list order,
                                    T * 16 per video (RTFM repeats each clip score 16 times)
      missing_files.txt             ad videos left out (no features or no video label)
      README.md                     the store's status, and every edit and flag RTFM and MGFN need
      aamflow_export.json

Neither tool reads the layout unmodified: both hard-code UCF-Crime's feature width (2048) and
training-list split (810), and slice ``batch_size * 10`` feature rows, so they need exactly 10
crops. :func:`rtfm_edits` and :func:`mgfn_edits` list the source edits for an export (checked
by running each tool's ``main.py`` on an export; see the README they write).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aamflow.pipeline.progress import progress_bar
from aamflow.schemas.store import FeatureStore

from ._anomaly import anomaly_lists, features, write_lists_and_truth
from ._common import (
    EXPORTERS,
    CropPlan,
    Edit,
    Exporter,
    Target,
    edits_table,
    save_npy,
    store_section,
    write_text,
)

TRAIN_LIST = "list/ucf-i3d.list"
TEST_LIST = "list/ucf-i3d-test.list"
GT_FILE = "list/gt-ucf.npy"


def feature_file(video_id: str) -> str:
    """Relative path of a video's feature file (RTFM's ``<name>_i3d.npy`` naming)."""
    return f"features/{video_id}_i3d.npy"


def write_rtfm(
    store: FeatureStore, target: Target, *, crops: CropPlan, quiet: bool = False
) -> dict[str, Any]:
    """Write the RTFM / MGFN layout of the store's ``ad`` videos into ``target``."""
    lists = anomaly_lists(store)
    frame_labels: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    test_ids = {v.id for v in lists.test}
    videos = lists.train + lists.test
    with progress_bar(total=len(videos), desc="export rtfm", unit="video", quiet=quiet) as bar:
        for video in videos:
            feats, labels = features(store, video, crops)
            save_npy(target.path(feature_file(video.id)), feats)  # [T, crops, C]
            lengths[video.id] = int(feats.shape[0])
            if video.id in test_ids:
                frame_labels[video.id] = labels
            bar.update(1)
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
    summary["tools"] = {
        "RTFM": {"unmodified": False, "edits": [e.to_dict() for e in rtfm_edits(summary)]},
        "MGFN": {"unmodified": False, "edits": [e.to_dict() for e in mgfn_edits(summary)]},
    }
    write_text(target.path("README.md"), _readme(target, summary, store_section(store, crops)))
    return summary


I3D_WIDTH = 2048  # UCF-Crime I3D features: what both tools' models hard-code
UCF_SPLIT = 810  # abnormal videos at the head of UCF-Crime's training list


def rtfm_edits(s: dict[str, Any]) -> list[Edit]:
    """The source edits RTFM (tianyu0207/RTFM) needs for an export with summary ``s``."""
    n, d = s["train_abnormal"], s["input_dim"]
    edits = [
        Edit(
            file="dataset.py",
            where="`Dataset._parse_list`, `ucf` branch (normal videos)",
            old=f"self.list[{UCF_SPLIT}:]",
            new=f"self.list[{n}:]",
            why="the training list's abnormal videos come first",
        ),
        Edit(
            file="dataset.py",
            where="same (abnormal videos)",
            old=f"self.list[:{UCF_SPLIT}]",
            new=f"self.list[:{n}]",
            why="",
        ),
    ]
    if d != I3D_WIDTH:
        edits += [
            Edit(
                file="model.py",
                where="`Model.__init__`",
                old="Aggregate(len_feature=2048)",
                new=f"Aggregate(len_feature={d})",
                why="feature width",
            ),
            Edit(
                file="model.py",
                where="`Aggregate.conv_4`",
                old="in_channels=2048, out_channels=512",
                new=f"in_channels={d}, out_channels=512",
                why="takes the input features",
            ),
            Edit(
                file="model.py",
                where="`Aggregate.conv_5`",
                old="in_channels=2048, out_channels=2048",
                new=f"in_channels=2048, out_channels={d}",
                why="its output is added to the input (its input, 4 x 512, stays 2048)",
            ),
            Edit(
                file="model.py",
                where="`Aggregate.conv_5`",
                old="nn.BatchNorm1d(2048)",
                new=f"nn.BatchNorm1d({d})",
                why="normalises conv_5's output",
            ),
        ]
    return edits


def mgfn_edits(s: dict[str, Any]) -> list[Edit]:
    """The source edits MGFN (carolchenyx/MGFN) needs for an export with summary ``s``."""
    n, d = s["train_abnormal"], s["input_dim"]
    edits = [
        Edit(
            file="datasets/dataset.py",
            where="`Dataset._parse_list`, `UCF` branch (normal videos)",
            old=f"self.list[{UCF_SPLIT}:]",
            new=f"self.list[{n}:]",
            why="the training list's abnormal videos come first",
        ),
        Edit(
            file="datasets/dataset.py",
            where="same (abnormal videos)",
            old=f"self.list[:{UCF_SPLIT}]",
            new=f"self.list[:{n}]",
            why="",
        ),
    ]
    if d != I3D_WIDTH:
        edits += [
            Edit(
                file="models/mgfn.py",
                where="`mgfn.__init__` (default argument)",
                old="channels = 2048",
                new=f"channels = {d}",
                why="feature width; `--feature_size` is never read by the model",
            ),
            Edit(
                file="models/mgfn.py",
                where="`mgfn.forward`",
                old="x[:,:2048,:]",
                new=f"x[:,:{d},:]",
                why="splits the features from the magnitude channel the loader appends",
            ),
            Edit(
                file="models/mgfn.py",
                where="`mgfn.forward`",
                old="x[:,2048:,:]",
                new=f"x[:,{d}:,:]",
                why="same",
            ),
        ]
    return edits


def _crops_note(s: dict[str, Any]) -> str:
    if s["crops"] == 10:
        kind = "copies of one view, `--repeat-crops`" if s["crops_repeated"] else "real crops"
        return f"This export has 10 crops per clip ({kind}), as both tools need."
    return (
        f"**This export has {s['crops']} crop(s) per clip and will not run**: re-export a "
        "ten-crop store (`aamflow extract --crops 10`, then anonymize), or pass "
        "`--repeat-crops 10` to a one-crop store's export (10 copies of its view)."
    )


def _readme(target: Target, s: dict[str, Any], store_md: str) -> str:
    root = target.final
    n, total = s["train_abnormal"], s["train_videos"]
    batch = max(1, min(n, total - n))
    return f"""# aamflow export: RTFM / MGFN layout

{store_md}
## What is here

{s["train_videos"]} training and {s["test_videos"]} test anomaly videos; one float32
`[T, {s["crops"]}, {s["input_dim"]}]` file per video (`features/<id>_i3d.npy`), T = the video's
dense clips in order (clip stride {s["feat_stride"]} frames, {s["num_frames"]} frames per clip;
never padded or cut). `list/gt-ucf.npy` holds {s["gt_length"]} frame labels: T x 16 per test
video, in test-list order, built from the frames each clip was decoded from. The training
list holds the **{n} abnormal videos first**, then {total - n} normal ones. The lists hold
absolute paths to `{root}/features`; re-export rather than move the folder.

**Neither RTFM nor MGFN reads this export unmodified.** Each needs the source edits below
(nothing else): the feature width and UCF-Crime's training-list split are constants in
their code. Both were checked by running the tool's own `main.py` (loader, model, training
steps and test with ROC AUC) on an export of this layout, on CPU. Both slice
`batch_size * 10` feature rows in the model, so they need exactly **10 crops per clip**.
{_crops_note(s)}

## RTFM (tianyu0207/RTFM)

1. Copy the lists into RTFM's `list/` folder: `dataset.py` and `test_10crop.py` open
   `list/ucf-i3d.list`, `list/ucf-i3d-test.list` and `list/gt-ucf.npy` relative to the
   working directory and ignore `--rgb-list`, `--test-rgb-list` and `--gt`:

   ```bash
   cp {root}/list/ucf-i3d.list {root}/list/ucf-i3d-test.list {root}/list/gt-ucf.npy RTFM/list/
   ```

2. Edit its source (every occurrence of the text):

{edits_table(rtfm_edits(s))}
3. Run from its checkout:

   ```bash
   python main.py --dataset ucf --feature-size {s["input_dim"]} --batch-size {batch}
   ```

   - `--dataset ucf`: the default, `shanghai`, reads the ShanghaiTech lists and cuts at 63.
   - `--feature-size {s["input_dim"]}`: the width of the first classifier layer (`fc1`).
   - `--batch-size` at most {batch} (the smaller of the {n} abnormal and {total - n} normal
     training videos): the training loaders drop an incomplete last batch, so a larger batch
     leaves none and `main.py` fails with `ZeroDivisionError` (the default is 32).

## MGFN (carolchenyx/MGFN)

1. Edit its source (every occurrence of the text):

{edits_table(mgfn_edits(s))}
2. Run from its checkout (MGFN reads the list flags):

   ```bash
   python main.py --rgb-list {root}/list/ucf-i3d.list \\
     --test-rgb-list {root}/list/ucf-i3d-test.list --gt {root}/list/gt-ucf.npy \\
     --datasetname UCF --batch_size {batch}
   ```

   - `--batch_size` at most {batch}, for the same reason as RTFM (else
     `UnboundLocalError: cost` in `train.py`); the default is 16.

## What the tools need regardless of this export

Not edits for this export, but what running them on a current machine took: a visdom
server for RTFM's `utils.Visualizer` (or a stub), `tensorboardX` for MGFN, numpy < 1.24 for
`np.int` in both tools' `process_feat`, and a CUDA GPU (RTFM's `RTFM_loss` calls
`label.cuda()`; MGFN sets `torch.cuda.FloatTensor` as the default tensor type). The check
ran them on CPU with those CUDA calls turned into no-ops.
"""


EXPORTERS.register("rtfm")(
    Exporter(
        name="rtfm",
        description="RTFM / MGFN: per-video [T, crops, C] .npy, list files, frame GT",
        has_crops=True,
        write=write_rtfm,
    )
)
