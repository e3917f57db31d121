"""ActionFormer / OpenTAD layout: per-video ``[T, C]`` features and THUMOS-style annotations.

Exports the store's ``tad`` videos (untrimmed, dense clips)::

    OUT/
      features/<video_id>.npy        float32 [T, C], the video's clips in store order (T exact)
      features/missing_files.txt     ids of videos without features (failed / no clips)
      annotations/thumos14.json      ActionFormer naming: subset "validation" (train + val
                                     videos) / "test" (test videos)
      annotations/thumos_14_anno.json  OpenTAD naming: subset "training" / "validation"
      annotations/category_idx.txt   OpenTAD class map, one class per line, line i = label_id i
      README.md                      the config values to set (feat_stride, num_frames, ...)
      aamflow_export.json

Both JSON files hold, per video: ``subset``, ``duration`` (= frame / fps), ``fps``, ``frame``
(decoded frames), ``feature_length`` (T), ``aamflow_split`` and ``annotations``
(``label``, ``segment`` [s, e] seconds, ``segment(frames)`` [s * fps, e * fps], ``label_id``).
The two files differ only in the subset names, which the tools use with opposite meanings
("validation" trains ActionFormer's THUMOS config but is OpenTAD's test subset).

``label_id`` numbers the classes that occur in the exported segments densely, in the store's
class order (ActionFormer asserts ``num_classes == len(label ids seen)``); it equals the store's
action code when every class occurs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aamflow.pipeline.progress import progress_bar
from aamflow.schemas.store import FeatureStore

from ._common import (
    EXPORTERS,
    CropPlan,
    Exporter,
    Target,
    clip_geometry,
    is_exportable,
    safe_name,
    save_npy,
    store_section,
    video_seconds,
    videos_of,
    write_json,
    write_text,
)

AF_SUBSETS = {"train": "validation", "val": "validation", "test": "test"}
OPENTAD_SUBSETS = {"train": "training", "val": "training", "test": "validation"}


def _annotations(store: FeatureStore, videos: Any) -> tuple[dict[int, list[dict]], list[str]]:
    """Per video row, its segments as annotation dicts; and the exported class names."""
    actions = store.label_spaces.actions
    segs = store.segments
    segs = segs[segs["video"].isin(videos["row"].tolist())] if len(segs) else segs
    present = sorted(int(c) for c in np.unique(segs["label"])) if len(segs) else []
    label_id = {code: i for i, code in enumerate(present)}
    fps = dict(zip(videos["row"].tolist(), videos["fps"].tolist(), strict=True))
    out: dict[int, list[dict]] = {}
    for r in segs.itertuples(index=False):
        f = float(fps[int(r.video)])
        out.setdefault(int(r.video), []).append(
            {
                "label": actions[int(r.label)],
                "segment": [round(float(r.start), 4), round(float(r.end), 4)],
                "segment(frames)": [round(float(r.start) * f, 2), round(float(r.end) * f, 2)],
                "label_id": label_id[int(r.label)],
            }
        )
    return out, [actions[c] for c in present]


def write_actionformer(
    store: FeatureStore, target: Target, *, crops: CropPlan, quiet: bool = False
) -> dict[str, Any]:
    """Write the ActionFormer / OpenTAD layout of the store's ``tad`` videos into ``target``
    (a ten-crop store's centre crop: these tools read one ``[T, C]`` view per video)."""
    videos = videos_of(store, "tad")
    annotations, classes = _annotations(store, videos)
    db_af: dict[str, Any] = {}
    db_ot: dict[str, Any] = {}
    missing: list[str] = []
    lengths: dict[str, int] = {}
    bar = progress_bar(total=len(videos), desc="export actionformer", unit="video", quiet=quiet)
    for _, v in videos.iterrows():
        bar.update(1)
        vid = safe_name(str(v["id"]))
        if is_exportable(v):
            feats = store.video(int(v["row"])).clip_features.astype(np.float32, copy=False)
            save_npy(target.path(f"features/{vid}.npy"), feats)
            lengths[vid] = int(feats.shape[0])
        else:
            missing.append(vid)
        fps, duration = video_seconds(v)
        entry = {
            "duration": round(duration, 4),
            "fps": fps,
            "frame": int(v["num_frames"]),
            "feature_length": lengths.get(vid, 0),
            "aamflow_split": str(v["split"]),
            "annotations": annotations.get(int(v["row"]), []),
        }
        db_af[vid] = {"subset": AF_SUBSETS[str(v["split"])], **entry}
        db_ot[vid] = {"subset": OPENTAD_SUBSETS[str(v["split"])], **entry}
    bar.close()

    version = f"aamflow export of store {store.uuid}"
    write_json(target.path("annotations/thumos14.json"), {"version": version, "database": db_af})
    write_json(
        target.path("annotations/thumos_14_anno.json"), {"version": version, "database": db_ot}
    )
    write_text(target.path("annotations/category_idx.txt"), "".join(f"{c}\n" for c in classes))
    write_text(target.path("features/missing_files.txt"), "".join(f"{m}\n" for m in missing))
    geometry = clip_geometry(store)
    summary = {
        **geometry,
        "tools": {
            "ActionFormer": {"unmodified": True, "edits": []},
            "OpenTAD": {"unmodified": True, "edits": []},
        },
        "num_classes": len(classes),
        "classes": classes,
        "videos": len(videos),
        "exported": len(lengths),
        "missing": missing,
        "max_T": max(lengths.values(), default=0),
    }
    write_text(target.path("README.md"), _readme(target, summary, store_section(store, crops)))
    return summary


def _readme(target: Target, s: dict[str, Any], store_md: str) -> str:
    root = target.final
    return f"""# aamflow export: ActionFormer / OpenTAD layout

{store_md}
## What is here

{s["exported"]} of {s["videos"]} TAD videos exported; one float32 `[T, C]` file per video with
T = the video's dense clips in order (never padded or cut; a ten-crop store's centre crop).
Clip `i` covers frames `[i * {s["feat_stride"]}, i * {s["feat_stride"]} + {s["num_frames"]})`
and is centred at frame `i * {s["feat_stride"]} + {s["offset_frames"]}`. Videos without
features are listed in `features/missing_files.txt`.

| value | number | meaning |
|---|---|---|
| feat_stride / feature_stride | {s["feat_stride"]} | frames between the starts of consecutive clips |
| num_frames | {s["num_frames"]} | frames one clip spans (clip_len {s["clip_len"]} x frame_stride {s["frame_stride"]}) |
| offset_frames | {s["offset_frames"]} | centre frame of the first clip |
| input_dim / in_channels | {s["input_dim"]} | feature dimension C |
| num_classes | {s["num_classes"]} | classes in the annotations (`annotations/category_idx.txt`) |
| longest T | {s["max_T"]} | clips of the longest exported video |

**ActionFormer and OpenTAD read this export unmodified**: no source edit, only the config
values below (paths, feature dim, stride, class count), which every dataset needs. Both were
checked by running the tools' own code on an export of this layout: ActionFormer's
`make_dataset('thumos')`, `train.py` and `eval.py` (`ANETdetection`), OpenTAD's
`build_dataset` and its mAP.

## ActionFormer (happyharrycn/actionformer_release)

Start from its `configs/thumos_i3d.yaml` and set:

```yaml
dataset_name: thumos
train_split: ['validation']
val_split: ['test']
dataset: {{
  json_file: {root}/annotations/thumos14.json,
  feat_folder: {root}/features,
  file_prefix: ~,
  file_ext: .npy,
  num_classes: {s["num_classes"]},
  input_dim: {s["input_dim"]},
  feat_stride: {s["feat_stride"]},
  num_frames: {s["num_frames"]},
  default_fps: ~,          # fps is in the JSON, per video
  trunc_thresh: 0.5,
  crop_ratio: [0.9, 1.0],
  max_seq_len: 2304,       # training crops longer videos to this; keep THUMOS's value
}}
test_cfg: {{
  multiclass_nms: True,    # no THUMOS external classification scores
}}
```

Every class is learned: ActionFormer's `thumos` dataset (`libs/datasets/thumos14.py`) has
`'empty_label_ids': []`, so no class id is masked.

## OpenTAD (sming256/OpenTAD)

In a copy of its `configs/_base_/datasets/thumos-14/features_i3d_pad.py` (or your model's
dataset config):

```python
annotation_path = "{root}/annotations/thumos_14_anno.json"
class_map = "{root}/annotations/category_idx.txt"
data_path = "{root}/features/"
block_list = data_path + "missing_files.txt"
# train: subset_name="training"; val/test: subset_name="validation"
# feature_stride={s["feat_stride"]}, sample_stride=1, offset_frames={s["offset_frames"]}
# model: in_channels={s["input_dim"]}, num_classes={s["num_classes"]}
```

## What the tools need regardless of this export

Not edits for this export: ActionFormer's C++ NMS extension built (`libs/utils/setup.py`),
`tensorboard`, numpy < 1.24 for `np.float` in its `ANETdetection`, and a CUDA GPU for its
defaults; OpenTAD imports torchvision (its feature pipeline does not use it). The check ran
both on CPU with CUDA calls turned into no-ops.
"""


EXPORTERS.register("actionformer")(
    Exporter(
        name="actionformer",
        description="ActionFormer / OpenTAD: per-video [T, C] .npy + THUMOS-style JSON",
        has_crops=False,
        write=write_actionformer,
    )
)
