"""Tiny corpora for stage tests: a synth corpus rendered once per session, and sub-manifests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import yaml


def subset_manifest(
    manifest: Path, out: Path, n: int, *, tasks=("ar", "tad", "ad"), extra: list[dict] | None = None
) -> Path:
    """A manifest with the first ``n`` videos of each task group, plus ``extra`` entries,
    whose root points at the original corpus."""
    doc = yaml.safe_load(manifest.read_text())
    videos = list(doc.get("videos") or [])
    for name in doc.pop("video_lists", None) or []:
        import json

        videos += [
            json.loads(line)
            for line in (manifest.parent / name).read_text().splitlines()
            if line.strip()
        ]
    picked = []
    for task in tasks:
        picked += [
            v for v in videos if v.get("task", "ar") == task and v.get("subset", "main") == "main"
        ][:n]
    doc["videos"] = picked + list(extra or [])
    doc["root"] = str((manifest.parent / doc.get("root", ".")).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def store_content_digest(path: Path) -> str:
    """sha256 over every array of every part (values, not provenance or timestamps)."""
    from aamflow.schemas.store import open_store

    h = hashlib.sha256()
    with open_store(path) as s:
        names = s._part(s.part_names[0]).names()
        for name in names:
            arr = s.read(name)
            h.update(name.encode())
            h.update(
                np.ascontiguousarray(arr).tobytes()
                if arr.dtype.kind not in "OUT"
                else "\0".join(map(str, arr.tolist())).encode()
            )
    return h.hexdigest()


def assert_same_arrays(path: Path, reference: Path) -> None:
    """Every array of ``path`` equals ``reference``'s, part by part: the same names, dtypes,
    shapes and bytes (strings compared as values)."""
    from aamflow.schemas.store import open_store

    with open_store(path) as s, open_store(reference) as r:
        assert s.part_names == r.part_names, (s.part_names, r.part_names)
        for part in r.part_names:
            names = r._part(part).names()
            assert s._part(part).names() == names, part
            for name in names:
                a = np.asarray(s._part(part)[name][:])
                b = np.asarray(r._part(part)[name][:])
                assert a.dtype == b.dtype and a.shape == b.shape, (part, name)
                if a.dtype.kind in "OUT":
                    assert a.tolist() == b.tolist(), (part, name)
                else:
                    assert a.tobytes() == b.tobytes(), (part, name)
