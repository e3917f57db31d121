"""Privacy leakage of one store: attackers trained after the fact to read private attributes.

Protocol, per attribute and feature source:

- Videos: every video of subset ``main`` (any task) whose status is ok and whose attribute is
  labelled. ``bias`` videos are left out: their attributes are skewed on purpose.
- Split by video, from the manifest: train and val videos train the attackers, test videos
  are scored. A video's clips never sit on both sides.
- Sources: ``static`` reads the static clips (one frame tiled, the paper's protocol; static
  attributes only, since a static clip has no motion); ``clips`` reads ordinary clips (at most
  ``max_clips_per_video`` per video, evenly spaced) for static *and* temporal attributes.
- Scoring is per (static) clip, as the paper scores images; the MLP holds out whole training
  videos for early stopping.

Report keys: ``<attribute>`` for the static source and ``<attribute>@clips`` for clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aamflow.schemas.layout import attribute_column
from aamflow.schemas.store import FeatureStore

from .attackers import attack
from .data import (
    MAIN_SUBSET,
    NO_PRIVATE_LABELS,
    TEST_SPLITS,
    TRAIN_SPLITS,
    gather,
    select_videos,
)
from .errors import Skipped

_SOURCES = {
    # source: (feature array, count column)
    "static": ("static_features", "static_count"),
    "clips": ("clip_features", "clip_count"),
}


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One privacy measurement: an attribute read from one feature source."""

    key: str  # report key
    attribute: str
    source: str  # "static" | "clips"
    values: tuple[str, ...]  # the attribute's class names


def plan_probes(store: FeatureStore, sources: tuple[str, ...]) -> list[Probe]:
    """The probes a store's label spaces call for, static source first."""
    spaces = store.label_spaces
    probes = []
    if "static" in sources:
        probes += [
            Probe(key=name, attribute=name, source="static", values=tuple(values))
            for name, values in spaces.attributes.items()
        ]
    if "clips" in sources:
        probes += [
            Probe(key=f"{name}@clips", attribute=name, source="clips", values=tuple(values))
            for name, values in spaces.all_attributes().items()
        ]
    return probes


def run_probe(
    store: FeatureStore,
    probe: Probe,
    *,
    attackers: tuple[str, ...],
    seed: int,
    max_clips_per_video: int | None,
) -> dict[str, Any]:
    """Train the attackers on the store's training videos and score them on its test videos.

    Returns :func:`~.attackers.attack`'s result plus ``scored_ids`` (the video id of each
    scored row), ``num_train_videos``, ``num_test_videos`` and ``scored_per``. Raises :class:`Skipped` when the store has no
    labelled test videos or fewer than two attribute values among its training videos.
    """
    column = attribute_column(probe.attribute)
    if len(store.videos) and column not in store.videos.columns:
        raise Skipped(f"privacy {probe.key}: {NO_PRIVATE_LABELS}")
    array, count = _SOURCES[probe.source]
    limit = max_clips_per_video if probe.source == "clips" else None
    pick = {"subset": MAIN_SUBSET, "labelled": column, "needs": count}
    train = select_videos(store, splits=TRAIN_SPLITS, **pick)
    test = select_videos(store, splits=TEST_SPLITS, **pick)
    if not len(train) or not len(test):
        raise Skipped(
            f"privacy {probe.key}: no labelled {'training' if not len(train) else 'test'} videos"
        )
    if train[column].nunique() < 2:
        raise Skipped(f"privacy {probe.key}: the training videos carry a single value")
    x_train, owner_train = gather(store, array, train, limit)
    x_test, owner_test = gather(store, array, test, limit)
    labels = store.videos[column]
    result = attack(
        x_train,
        labels.loc[owner_train].to_numpy(np.int64),
        x_test,
        labels.loc[owner_test].to_numpy(np.int64),
        num_classes=len(probe.values),
        attackers=attackers,
        seed=seed,
        groups_train=owner_train,
    )
    video_id = dict(zip(test["row"].tolist(), test["id"].tolist(), strict=True))
    scored_rows = owner_test[result["scored"].rows]
    result.update(
        scored_ids=np.asarray([video_id[int(r)] for r in scored_rows], dtype=object),
        num_train_videos=len(train),
        num_test_videos=len(test),
        scored_per="static clip" if probe.source == "static" else "clip",
    )
    return result
