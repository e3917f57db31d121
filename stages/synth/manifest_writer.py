"""Turn a plan into ``data_manifest.yaml`` (and JSONL video lists), written atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aamflow.schemas.atomic import atomic_write_text

from .plan import VideoPlan
from .presets import ACTIONS, ATTRIBUTES, GROUPS, TEMPORAL_ATTRIBUTES, Preset

MANIFEST_NAME = "data_manifest.yaml"
SCHEMA = "aamflow.manifest/1"
# clip sampling written into every synthetic manifest (input_size = the builtin encoder's)
SAMPLING = {
    "clip_len": 16,
    "frame_stride": 1,
    "clip_stride": 16,
    "dense_stride": 4,
    "static_per_video": 10,
    "input_size": 112,
}


def label_spaces() -> dict[str, Any]:
    return {
        "actions": list(ACTIONS),
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "temporal_attributes": {k: list(v) for k, v in TEMPORAL_ATTRIBUTES.items()},
        "groups": list(GROUPS),
    }


def write_manifest(out: Path, preset: Preset, seed: int, plans: Sequence[VideoPlan]) -> Path:
    """Write the manifest (inline videos for small presets, else one JSONL list per
    task/subset) and return its path."""
    import yaml

    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": f"synth-{preset.name}-seed{seed}",
        "root": ".",
        "sampling": dict(SAMPLING, input_size=preset.size),
        "label_spaces": label_spaces(),
    }
    entries = [p.to_entry() for p in plans]
    if preset.inline:
        doc["videos"] = entries
    else:
        groups: dict[str, list[dict[str, Any]]] = {}
        for p, entry in zip(plans, entries, strict=True):
            key = "bias" if p.subset == "bias" else p.task
            groups.setdefault(key, []).append(entry)
        doc["video_lists"] = []
        for key, items in groups.items():
            name = f"videos_{key}.jsonl"
            atomic_write_text(out / name, "".join(json.dumps(e) + "\n" for e in items))
            doc["video_lists"].append(name)
    path = out / MANIFEST_NAME
    atomic_write_text(
        path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    )
    return path
