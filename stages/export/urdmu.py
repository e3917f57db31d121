"""UR-DMU layout: one ``[T, C]`` file per crop, list files with crops consecutive, frame GT.

Exports the store's ``ad`` videos (see :mod:`._anomaly` for the lists and the ground truth)::

    OUT/
      features/<Class>/<stem>__<k>.npy   float32 [T, C], crop k = 0 .. crops-1 (a ten-crop
                                         store: its 10 real crops; --repeat-crops K: hard
                                         links to one file, labelled as copies)
      features/Normal/Normal_<id>_x264__<k>.npy
      list/UCF_Train.list     absolute paths, abnormal videos first, a video's crops consecutive
      list/UCF_Test.list      the same for test videos
      frame_label/gt-ucf.npy  float32 frame labels over the test list, T * 16 per video
      names.tsv               video id -> UR-DMU name and class
      missing_files.txt       ad videos left out (no features or no video label)
      README.md               the store's status, and every edit UR-DMU needs
      aamflow_export.json

UR-DMU reads the label from the file name (``"Normal" in name`` is normal) and
``ucf_infer.py`` a class from UCF-Crime's naming (``Abuse028_x264__0.npy``: the name before
``_x264`` less its last 3 characters); :func:`urdmu_names` meets that naming. Its test loops
average every 10 consecutive list entries, so it needs 10 crops per video.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from aamflow.pipeline.progress import progress_bar
from aamflow.schemas.store import FeatureStore

from ._anomaly import AnomalyLists, anomaly_lists, features, write_lists_and_truth
from ._common import (
    EXPORTERS,
    CropPlan,
    Edit,
    Exporter,
    Target,
    edits_table,
    link_or_copy,
    save_npy,
    store_section,
    write_text,
)

TRAIN_LIST = "list/UCF_Train.list"
TEST_LIST = "list/UCF_Test.list"
GT_FILE = "frame_label/gt-ucf.npy"
NAMES_FILE = "names.tsv"
URDMU_GROUP = 10  # ucf_test.py / ucf_infer.py average every 10 consecutive list entries
# the classes ucf_infer.py's per-class dicts (ucf_pdict / ucf_gdict) know, besides "Normal"
UCF_CLASSES = (
    "Abuse",
    "Arrest",
    "Arson",
    "Assault",
    "Burglary",
    "Explosion",
    "Fighting",
    "RoadAccidents",
    "Robbery",
    "Shooting",
    "Shoplifting",
    "Stealing",
    "Vandalism",
)
_UCF_ABNORMAL = re.compile(rf"^({'|'.join(UCF_CLASSES)})\d{{3}}_x264$")
_UCF_NORMAL = re.compile(r"^Normal_Videos_?\d+_x264$")
ANOMALY_CLASS = "Anomaly"  # the class prefix of abnormal videos without a UCF-Crime name


@dataclass(frozen=True, kw_only=True)
class UrdmuName:
    """A video's UR-DMU name: ``<folder>/<stem>__<k>.npy`` with ``stem`` ending ``_x264``.

    UR-DMU reads the label from the file name (``"Normal" in name`` is normal) and
    ``ucf_infer.py`` the class from ``name.split("_x264")[0][:-3]`` (``Abuse028`` ->
    ``Abuse``), so abnormal stems are ``<Class><3 digits>_x264``.
    """

    folder: str
    stem: str
    ucf_class: str  # "Normal", a UCF-Crime class, or ANOMALY_CLASS (+ thousands digit)


def urdmu_names(lists: AnomalyLists) -> dict[str, UrdmuName]:
    """UR-DMU names for the listed videos, by id.

    An id that already has a UCF-Crime name (``Abuse028_x264``, ``Normal_Videos_003_x264``)
    keeps it. Other abnormal videos become ``Anomaly001_x264``, ``Anomaly002_x264`` ... in
    store row order (the class is the name less its last 3 digits: ``Anomaly`` for the first
    999, then ``Anomaly1`` ...); other normal videos ``Normal_<id>_x264``.
    """
    names: dict[str, UrdmuName] = {}
    counter = 0
    for video in sorted(lists.train + lists.test, key=lambda v: v.row):
        flat = video.id.replace("/", "_")  # the tools read the base name only
        if video.abnormal:
            if _UCF_ABNORMAL.match(flat):
                stem = flat
            else:
                counter += 1
                stem = f"{ANOMALY_CLASS}{counter:03d}_x264"
            cls = stem.split("_x264")[0][:-3]
            names[video.id] = UrdmuName(folder=cls, stem=stem, ucf_class=cls)
        else:
            stem = flat if _UCF_NORMAL.match(flat) else f"Normal_{flat}_x264"
            names[video.id] = UrdmuName(folder="Normal", stem=stem, ucf_class="Normal")
    return names


def crop_files(name: UrdmuName, crops: int) -> list[str]:
    """Relative paths of a video's crop files, ``features/<folder>/<stem>__<k>.npy``."""
    return [f"features/{name.folder}/{name.stem}__{k}.npy" for k in range(crops)]


def write_urdmu(
    store: FeatureStore, target: Target, *, crops: CropPlan, quiet: bool = False
) -> dict[str, Any]:
    """Write the UR-DMU layout of the store's ``ad`` videos into ``target``."""
    lists = anomaly_lists(store)
    names = urdmu_names(lists)
    frame_labels: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    test_ids = {v.id for v in lists.test}
    videos = lists.train + lists.test
    with progress_bar(total=len(videos), desc="export urdmu", unit="video", quiet=quiet) as bar:
        for video in videos:
            feats, labels = features(store, video, crops)  # [T, crops, C]
            files = crop_files(names[video.id], crops.count)
            if crops.repeated:  # copies of one view: hard links, the disk space of one
                first = target.path(files[0])
                save_npy(first, feats[:, 0])
                for extra in files[1:]:
                    link_or_copy(first, target.path(extra))
            else:
                for k, rel in enumerate(files):
                    save_npy(target.path(rel), feats[:, k])
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
        files_of=lambda v: crop_files(names[v.id], crops.count),
        crops=crops,
        lengths=lengths,
    )
    rows = [(v.id, names[v.id].stem, names[v.id].ucf_class) for v in videos]
    write_text(
        target.path(NAMES_FILE),
        "video_id\tname\tclass\n" + "".join(f"{i}\t{n}\t{c}\n" for i, n, c in rows),
    )
    summary["names"] = {i: n for i, n, _ in rows}
    summary["classes"] = sorted({c for _, _, c in rows} - {"Normal"})
    summary["tools"] = {
        "UR-DMU": {"unmodified": False, "edits": [e.to_dict() for e in urdmu_edits(summary)]}
    }
    write_text(target.path("README.md"), _readme(target, summary, store_section(store, crops)))
    return summary


URDMU_SPLIT = 8100  # UCF-Crime: 810 abnormal training videos x 10 crops
URDMU_WIDTH = 1024  # UCF-Crime I3D RGB features
URDMU_BATCH = 64  # ucf_main.py's training loaders (the --batch_size flag is not used)


def urdmu_edits(s: dict[str, Any]) -> list[Edit]:
    """The source edits UR-DMU (henrryzh1/UR-DMU) needs for an export with summary ``s``."""
    crops, d = s["crops"], s["input_dim"]
    n_abn = s["train_abnormal"] * crops
    n_norm = (s["train_videos"] - s["train_abnormal"]) * crops
    edits = [
        Edit(
            file="dataset_loader.py",
            where="`UCF_crime.__init__` (normal videos)",
            old=f"self.vid_list[{URDMU_SPLIT}:]",
            new=f"self.vid_list[{n_abn}:]",
            why=f"{s['train_abnormal']} abnormal videos x {crops} crops come first",
        ),
        Edit(
            file="dataset_loader.py",
            where="same (abnormal videos)",
            old=f"self.vid_list[:{URDMU_SPLIT}]",
            new=f"self.vid_list[:{n_abn}]",
            why="",
        ),
        Edit(
            file="ucf_test.py",
            where="`test` (line 30)",
            old="_data, _label = next(load_iter)",
            new="_data, _label, _name = next(load_iter)",
            why="UR-DMU's own bug: the test loader yields (data, label, name)",
        ),
    ]
    if d != URDMU_WIDTH:
        for f in ("ucf_main.py", "ucf_infer.py"):
            edits.append(
                Edit(
                    file=f,
                    where="`__main__`",
                    old=f"config.len_feature = {URDMU_WIDTH}",
                    new=f"config.len_feature = {d}",
                    why="feature width",
                )
            )
    batch = min(n_abn, n_norm)
    if batch < URDMU_BATCH:
        edits.append(
            Edit(
                file="ucf_main.py",
                where="both training loaders",
                old=f"batch_size = {URDMU_BATCH}",
                new=f"batch_size = {max(batch, 1)}",
                why=f"the loaders drop an incomplete batch: at most {batch} list entries",
            )
        )
    if crops != 10:
        for f in ("ucf_test.py", "ucf_infer.py"):
            edits.append(
                Edit(
                    file=f,
                    where="the test loop",
                    old="if (i + 1) % 10 == 0 :",
                    new=f"if (i + 1) % {crops} == 0 :",
                    why=f"it averages 10 entries per video; this export has {crops}",
                )
            )
    extra = [c for c in s["classes"] if c not in UCF_CLASSES]
    if extra:
        added = "".join(f' "{c}":{{}},' for c in extra)
        edits.append(
            Edit(
                file="ucf_infer.py",
                where="`valid`: `ucf_pdict` and `ucf_gdict`",
                old='"Normal":{},',
                new=f'"Normal":{{}},{added}',
                why="its per-class dicts know only UCF-Crime's 13 classes",
            )
        )
    return edits


def _readme(target: Target, s: dict[str, Any], store_md: str) -> str:
    root = target.final
    crops = s["crops"]
    classes = ", ".join(f"`{c}`" for c in s["classes"]) or "none"
    if crops == 10:
        kind = "copies of one view, `--repeat-crops`" if s["crops_repeated"] else "real crops"
        crop_note = f"10 crop files per video ({kind}), the 10 entries its test loops average."
    else:
        crop_note = (
            f"**{crops} crop file(s) per video**: its test loops average 10 entries per "
            "video, so the edits below include that count; UR-DMU was trained on ten-crop "
            "features (`aamflow extract --crops 10`)."
        )
    return f"""# aamflow export: UR-DMU layout

{store_md}
## What is here

{s["train_videos"]} training and {s["test_videos"]} test anomaly videos; {crop_note}
Each file is float32 `[T, {s["input_dim"]}]`, T = the video's dense clips in order (clip
stride {s["feat_stride"]} frames, {s["num_frames"]} frames per clip; never padded or cut).
`frame_label/gt-ucf.npy` holds {s["gt_length"]} frame labels: T x 16 per test video, in
test-list order. The lists hold absolute paths to `{root}/features` (re-export rather than
move the folder), abnormal videos first, a video's crops consecutive.

**Names.** UR-DMU reads the label from the file name (`Normal` in it: normal) and
`ucf_infer.py` the class from UCF-Crime's naming (`Abuse028_x264__0.npy`). A video whose id
already has that form keeps it; other abnormal videos are `Anomaly001_x264`, `Anomaly002_x264`
... in store order, other normal videos `Normal_<id>_x264`. `names.tsv` maps every video id
to its name. Classes used by abnormal videos here: {classes}.

## UR-DMU (henrryzh1/UR-DMU)

**It does not read this export unmodified.** It was checked by running its own
`ucf_main.py` (loader, training steps, `ucf_test.py` with ROC AUC) and `ucf_infer.py` on an
export of this layout, on CPU; these are all the edits it needs.

1. Copy the lists and the ground truth into its checkout (it opens these relative paths):

   ```bash
   cp {root}/list/UCF_Train.list {root}/list/UCF_Test.list UR-DMU/list/
   cp {root}/frame_label/gt-ucf.npy UR-DMU/frame_label/
   ```

2. Edit its source (every occurrence of the text):

{edits_table(urdmu_edits(s))}
3. Run `python ucf_main.py` (its `--batch_size` flag is not used: the loaders' batch size is
   the constant above), then `python ucf_infer.py`, which loads the model that
   `ucf_main.py` saved as `models/ucf_trans_2022.pkl`.

## What UR-DMU needs regardless of this export

A visdom server for `utils.Visualizer` (or a stub), `ipdb` (imported by `translayer.py`),
numpy < 1.24 for `np.int` in
`dataset_loader.py`, and a CUDA GPU (`torch.cuda.set_device` and `.cuda()` calls); the check
ran it on CPU with those CUDA calls turned into no-ops.
"""


EXPORTERS.register("urdmu")(
    Exporter(
        name="urdmu",
        description="UR-DMU: per-crop [T, C] .npy in Normal/Abnormal folders, lists, frame GT",
        has_crops=True,
        write=write_urdmu,
    )
)
