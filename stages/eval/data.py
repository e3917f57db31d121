"""Reading what eval needs from a feature store: video selections, feature rows, sequences.

Every selection is by *video*: a video's clips, static clips and frame labels all follow its
``split`` column, so no attacker or head ever sees a test video's clip while training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.layout import attribute_column
from aamflow.schemas.store import FeatureStore, label_codes

TRAIN_SPLITS = ("train", "val")
"""Splits whose videos train attackers, probes and heads."""

TEST_SPLITS = ("test",)
"""Splits whose videos are scored."""

MAIN_SUBSET = "main"
BIAS_SUBSET = "bias"

NO_PRIVATE_LABELS = (
    "the store holds no private labels (anonymize strips them); pass --reference RAW_STORE "
    "or --manifest data_manifest.yaml to read them from there"
)

# The videos-table columns (start, count) locating a video's rows in each per-video array.
_TABLES = {
    "clip_features": ("clip_start", "clip_count"),
    "clip_frame_idx": ("clip_start", "clip_count"),
    "static_features": ("static_start", "static_count"),
    "frame_labels": ("frame_start", "frame_count"),
}


def select_videos(
    store: FeatureStore,
    *,
    splits: Sequence[str],
    task: str | None = None,
    subset: str | None = MAIN_SUBSET,
    labelled: str | None = None,
    needs: str = "clip_count",
) -> Any:
    """Videos (a slice of ``store.videos``) usable for one measurement.

    Parameters
    ----------
    splits
        Keep videos whose split is one of these.
    task, subset
        Keep only this task (``ar``/``tad``/``ad``) and subset (``main``/``bias``); None = any.
    labelled
        A label column (``label_action``, ``label_attr_gender`` ...) that must be known (>= 0).
    needs
        A count column that must be positive (``clip_count`` or ``static_count``).
    """
    v = store.videos
    if not len(v):
        return v
    keep = (v["status"] == "ok") & v["split"].isin(list(splits)) & (v[needs] > 0)
    if task is not None:
        keep &= v["task"] == task
    if subset is not None:
        keep &= v["subset"] == subset
    if labelled is not None:
        if labelled not in v.columns:
            return v.iloc[:0]
        keep &= v[labelled] >= 0
    return v[keep]


def evenly_spaced(count: int, limit: int | None) -> np.ndarray:
    """Up to ``limit`` indices spread evenly over ``range(count)`` (all when it fits)."""
    if limit is None or count <= limit:
        return np.arange(count, dtype=np.int64)
    return np.floor((np.arange(limit) + 0.5) * count / limit).astype(np.int64)


def gather(
    store: FeatureStore, array: str, videos: Any, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one per-video array (features, frame indices, frame labels) for these videos.

    Returns
    -------
    (values, owner)
        ``values[i]`` is a row of ``array``; ``owner[i]`` the video row it belongs to. Rows come
        in video order, each video's rows in store order (at most ``limit``, evenly spaced).
    """
    start_col, count_col = _TABLES[array]
    starts = videos[start_col].to_numpy(np.int64)
    counts = videos[count_col].to_numpy(np.int64)
    rows = videos["row"].to_numpy(np.int64)
    picks = [s + evenly_spaced(int(n), limit) for s, n in zip(starts, counts, strict=True)]
    idx = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    owner = np.repeat(rows, [len(p) for p in picks]) if picks else np.zeros(0, np.int64)
    lazy = store.crop_view(store.dask(array))  # a ten-crop store: its centre crop
    if idx.size == 0:
        return np.zeros((0, *lazy.shape[1:]), dtype=lazy.dtype), owner
    return np.asarray(lazy[idx]), owner


def sequences(store: FeatureStore, array: str, videos: Any) -> list[np.ndarray]:
    """One array per video (e.g. its ``[T, D]`` clip features), in the order of ``videos``."""
    values, _ = gather(store, array, videos)
    _, count_col = _TABLES[array]
    bounds = np.cumsum(videos[count_col].to_numpy(np.int64))[:-1]
    return np.split(values, bounds) if len(videos) else []


def clip_geometry(store: FeatureStore, task: str) -> tuple[int, int]:
    """``(stride, span)`` in frames of a video's clips, the TAD head's time convention.

    ``stride`` is the start-to-start step (``dense_stride`` for ``tad``/``ad``, ``clip_stride``
    for ``ar``); ``span`` is ``clip_len * frame_stride`` (see ``stages/models/tad_head.py``).
    """
    s = store.sampling
    stride = int(s.get("clip_stride", 16) if task == "ar" else s.get("dense_stride", 4))
    span = int(s.get("clip_len", 16)) * int(s.get("frame_stride", 1))
    return stride, span


def store_identity(store: FeatureStore) -> dict[str, Any]:
    """What the report records about a store: path, UUID, encoder, provenance."""
    prov = store.provenance
    return {
        "path": str(store.path),
        "uuid": store.uuid,
        "label": "anonymized" if prov.get("anonymized") else "raw",
        "encoder": store.encoder.get("name"),
        "weights_digest": store.encoder.get("weights_digest"),
        "feature_dim": store.feature_dim,
        "manifest_digest": prov.get("manifest_digest"),
        "anonymized": bool(prov.get("anonymized")),
        "adapter_digest": prov.get("adapter_digest"),
        "source_store_uuid": prov.get("source_store_uuid"),
    }


def check_comparable(store: FeatureStore, reference: FeatureStore) -> list[str]:
    """Refuse a reference that does not describe the same videos with the same encoder.

    Raises ConfigError when the encoders (name, weights digest), the manifests (digest) or the
    label spaces differ. Returns warnings for weaker mismatches (e.g. the store was not
    anonymized from this reference).
    """
    a, b = store.encoder, reference.encoder
    for key in ("name", "weights_digest"):
        if a.get(key) != b.get(key):
            raise ConfigError(
                f"eval: --reference {reference.path} was extracted with encoder {key} "
                f"{b.get(key)!r} but --store {store.path} with {a.get(key)!r}; "
                "compare stores of the same encoder"
            )
    da, db = store.provenance.get("manifest_digest"), reference.provenance.get("manifest_digest")
    if da != db:
        raise ConfigError(
            f"eval: --reference {reference.path} comes from manifest {db!r} but --store "
            f"{store.path} from {da!r}; compare stores of the same manifest"
        )
    if store.meta.get("label_spaces") != reference.meta.get("label_spaces"):
        raise ConfigError(
            f"eval: --reference {reference.path} and --store {store.path} declare different "
            "label spaces; compare stores of the same manifest"
        )
    warnings = []
    source = store.provenance.get("source_store_uuid")
    if source is not None and source != reference.uuid:
        warnings.append(
            f"--store was anonymized from store {source}, not from --reference "
            f"({reference.uuid}); comparing anyway (same encoder and manifest)"
        )
    if store.uuid == reference.uuid and store.path.resolve() != reference.path.resolve():
        warnings.append("--store and --reference are copies of the same store")
    return warnings


def private_label_columns(store: FeatureStore) -> list[str]:
    """The private label columns a store's label spaces declare (attributes and group)."""
    spaces = store.label_spaces
    cols = [attribute_column(name) for name in spaces.all_attributes()]
    return cols + (["label_group"] if spaces.groups else [])


def _manifest_labels(manifest: Any, columns: list[str]) -> Any:
    import pandas as pd

    rows = {}
    for entry in manifest.videos:
        codes = label_codes(entry, manifest.label_spaces)
        rows[entry.id] = {
            "split": entry.split,
            "task": entry.task,
            **{c: codes[c] for c in columns},
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["split", "task", *columns])


def attach_private_labels(store: FeatureStore, source: Any, what: str) -> list[str]:
    """Give ``store`` the private label columns it lacks (an anonymized store holds none),
    read from ``source`` (a raw FeatureStore or a Manifest) and matched by video id.

    The labels serve only to score the attackers; they are never written. Raises
    ConfigError when ``source`` does not describe the store's videos: other label spaces,
    an id it lacks, or an id in another split or task. Returns the columns attached.
    """
    from aamflow.schemas.errors import show
    from aamflow.schemas.manifest import Manifest

    videos = store.videos
    wanted = [c for c in private_label_columns(store) if c not in videos.columns]
    if not wanted or not len(videos):
        return []
    if isinstance(source, Manifest):
        if source.label_spaces.to_dict() != store.meta.get("label_spaces"):
            raise ConfigError(
                f"eval: {what} declares other label spaces than --store {store.path}; "
                "pass the manifest the store was extracted from"
            )
        table = _manifest_labels(source, wanted)
    else:
        have = [c for c in wanted if c in source.videos.columns]
        if not have:
            return []
        wanted = have
        table = source.videos.set_index("id")[["split", "task", *wanted]]
    ids = videos["id"].to_numpy()
    absent = ~videos["id"].isin(table.index).to_numpy()
    if absent.any():
        raise ConfigError(
            f"eval: {what} lacks {int(absent.sum())} of --store's {len(ids)} video ids "
            f"(first: {show(str(ids[absent][0]))}); pass the raw store or manifest it was made from"
        )
    matched = table.loc[ids]
    for col in ("split", "task"):
        differ = matched[col].to_numpy() != videos[col].to_numpy()
        if differ.any():
            vid = str(ids[differ][0])
            raise ConfigError(
                f"eval: video {show(vid)} is {col} {videos[col].to_numpy()[differ][0]!r} in "
                f"--store but {matched[col].to_numpy()[differ][0]!r} in {what}; they describe "
                "other videos"
            )
    for col in wanted:
        videos[col] = matched[col].to_numpy(np.int64)
    return wanted
