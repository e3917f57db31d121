"""The physical layout of a feature store part: every array, its dimensions and dtype.

A store holds root attributes (``aamflow`` key) and a ``parts`` group. Each part is written
by exactly one task and holds the same arrays below, for a contiguous range of video rows.
Offsets (``video_clip_start`` ...) are local to the part; ``*_video`` columns hold the
*global* video row, which is the video's position in the manifest.

A ten-crop store (``sampling.crops: 10``) keeps a ``crop`` axis on both feature arrays:
``clip_features`` and ``static_features`` are ``[rows, crop, feature]``, crops in
:data:`CROP_NAMES` order. A one-crop store has no crop axis (``[rows, feature]``), byte for
byte the layout of stores written before crops existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STORE_SCHEMA = "aamflow.feature-store"
STORE_VERSION = 1

SPLIT_CODES = ("train", "val", "test")
TASK_CODES = ("ar", "tad", "ad")
STATUS_CODES = ("ok", "failed")

STR = "str"  # variable-length UTF-8 string column


@dataclass(frozen=True)
class ArraySpec:
    """One array of a part: its table, dimension names and dtype."""

    table: str
    dims: tuple[str, ...]
    dtype: str
    fill: object = 0


def _v(dtype: str, fill: object = 0) -> ArraySpec:
    return ArraySpec("videos", ("video",), dtype, fill)


# Fixed columns; label columns (``label_*``) are added per store from its label spaces.
BASE_ARRAYS: dict[str, ArraySpec] = {
    # the videos table, one row per video
    "video_row": _v("int64", -1),
    "video_id": _v(STR, ""),
    "video_path": _v(STR, ""),
    "video_split": _v("int8", -1),
    "video_task": _v("int8", -1),
    "video_subset": _v(STR, ""),
    "video_num_frames": _v("int64", -1),
    "video_fps": _v("float64", np.nan),
    "video_duration": _v("float64", np.nan),
    "video_width": _v("int32", -1),
    "video_height": _v("int32", -1),
    "video_status": _v("int8", -1),
    "video_error": _v(STR, ""),
    "video_decoder": _v(STR, ""),
    "video_clip_start": _v("int64", -1),
    "video_clip_count": _v("int64", -1),
    "video_static_start": _v("int64", -1),
    "video_static_count": _v("int64", -1),
    "video_segment_start": _v("int64", -1),
    "video_segment_count": _v("int64", -1),
    "video_frame_start": _v("int64", -1),
    "video_frame_count": _v("int64", -1),
    "label_action": _v("int32", -1),
    "label_anomaly": _v("int8", -1),
    "label_group": _v("int32", -1),
    # clip features and where each clip came from
    "clip_features": ArraySpec("clips", ("clip", "feature"), "float32", np.nan),
    "clip_video": ArraySpec("clips", ("clip",), "int64", -1),
    "clip_frames": ArraySpec("clips", ("clip", "bound"), "int64", -1),
    "clip_time": ArraySpec("clips", ("clip", "bound"), "float64", np.nan),
    "clip_frame_idx": ArraySpec("clips", ("clip", "clip_frame"), "int32", -1),
    "clip_padded": ArraySpec("clips", ("clip",), "int8", -1),
    # static clips: one frame tiled to clip_len
    "static_features": ArraySpec("static", ("static", "feature"), "float32", np.nan),
    "static_video": ArraySpec("static", ("static",), "int64", -1),
    "static_frame": ArraySpec("static", ("static",), "int64", -1),
    # TAD ground truth, seconds
    "segment_video": ArraySpec("segments", ("segment",), "int64", -1),
    "segment_label": ArraySpec("segments", ("segment",), "int32", -1),
    "segment_time": ArraySpec("segments", ("segment", "bound"), "float64", np.nan),
    # AD ground truth per decoded frame (0 normal, 1 abnormal, -1 unknown)
    "frame_labels": ArraySpec("frames", ("video_frame",), "int8", -1),
}

FEATURE_ARRAYS = ("clip_features", "static_features")
TABLES = ("videos", "clips", "static", "segments", "frames")

# Columns an anonymized store leaves out: beside every ``label_attr_*``, the bias group (a
# private attribute), and the source paths (an error text may quote one).
GROUP_COLUMN = "label_group"
SOURCE_PATH_COLUMNS = ("video_path", "video_error")


# The ten views of a ten-crop store, in the order of its crop axis (torchvision TenCrop):
# windows of the frame, then the same windows of its mirror image (horizontal flip).
CROP_NAMES = (
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "centre",
    "mirror_top_left",
    "mirror_top_right",
    "mirror_bottom_left",
    "mirror_bottom_right",
    "mirror_centre",
)
CENTRE_CROP = CROP_NAMES.index("centre")


def crop_names(crops: int) -> tuple[str, ...]:
    """The names of a store's views: ``("centre",)`` for one crop, :data:`CROP_NAMES` for ten."""
    if crops == 1:
        return ("centre",)
    if crops == len(CROP_NAMES):
        return CROP_NAMES
    raise ValueError(f"a store holds 1 or {len(CROP_NAMES)} crops, not {crops}")


def view_crop(crops: int) -> int:
    """Index on the crop axis of the view that train-adapter and eval use: the centre."""
    return crop_names(crops).index("centre")


def attribute_column(name: str) -> str:
    return f"label_attr_{name}"


def part_arrays(attribute_names: list[str], crops: int = 1) -> dict[str, ArraySpec]:
    """All arrays of a part for a store whose label spaces declare these attributes; with
    ``crops > 1`` the feature arrays gain a ``crop`` axis after the row axis."""
    arrays = dict(BASE_ARRAYS)
    for name in attribute_names:
        arrays[attribute_column(name)] = _v("int32", -1)
    if crops > 1:
        for name in FEATURE_ARRAYS:
            spec = arrays[name]
            arrays[name] = ArraySpec(
                spec.table, (spec.dims[0], "crop", "feature"), spec.dtype, spec.fill
            )
    return arrays


def tail_shape(spec: ArraySpec, feature_dim: int, clip_len: int, crops: int = 1) -> tuple[int, ...]:
    sizes = {"feature": feature_dim, "clip_frame": clip_len, "bound": 2, "crop": crops}
    return tuple(sizes[d] for d in spec.dims[1:])


def store_crops(meta: dict) -> int:
    """Crops per clip of a store, from its root attributes (1 when ``sampling`` omits it)."""
    return int((meta.get("sampling") or {}).get("crops", 1))


def numpy_dtype(spec: ArraySpec) -> np.dtype:
    return np.dtype(object) if spec.dtype == STR else np.dtype(spec.dtype)


def part_name(index: int) -> str:
    return f"part-{index:05d}"
