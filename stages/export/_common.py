"""Framework code shared by the export formats: the registry, atomic writes, the staged folder.

An export is written into a hidden staging folder beside ``--out`` and moved into place at the
end, so a reader never sees half an export; inside it every file is also written to a temporary
name and renamed. The finished folder carries ``aamflow_export.json`` (which store, which
format, which files), and that marker is what lets a later run replace a previous export of the
same store in the same format. Any other non-empty ``--out`` is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from aamflow.schemas._registry import Registry
from aamflow.schemas.atomic import atomic_write_text, atomic_write_with, temp_name
from aamflow.schemas.errors import ConfigError, StoreError
from aamflow.schemas.store import FeatureStore

MARKER = "aamflow_export.json"
EXPORT_SCHEMA = "aamflow.export/1"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where an exporter writes now (``staging``) and where the files will live (``final``).

    List files that name feature files by path use ``final`` (absolute), since the tools
    ``np.load`` those paths as written.
    """

    staging: Path
    final: Path

    def path(self, rel: str | Path) -> Path:
        """A file in the staging folder (its parent folders are created)."""
        p = self.staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def final_path(self, rel: str | Path) -> str:
        """The absolute path a file will have once the export is in place."""
        return str(self.final / rel)


@dataclass(frozen=True, kw_only=True)
class Exporter:
    """One registered export format.

    ``write(store, target, *, crops, quiet) -> dict`` writes every file of the format into
    ``target`` and returns a JSON-able summary (counts, config values), recorded in the marker.
    """

    name: str
    description: str
    default_crops: int | None  # None: the format has no crop axis
    write: Callable[..., dict[str, Any]]


EXPORTERS: Registry[Exporter] = Registry("export format")


# ------------------------------------------------------------------------------ atomic writes


# the whole export is staged and renamed at the end, so per-file fsync would only slow it


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name, then rename."""
    atomic_write_with(path, lambda f: np.save(f, np.ascontiguousarray(array)), fsync=False)


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text, fsync=False)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a hard link to ``src`` (one copy on disk), or a copy where links fail."""
    tmp = temp_name(dst)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def safe_name(video_id: str) -> str:
    """A video id usable as a relative file name; refuses ids that would escape the folder,
    split a line of a list file (control characters) or exceed a file name's 255 bytes once
    a format's suffix is added (the manifest's limit, for stores written before it)."""
    from aamflow.schemas.errors import show
    from aamflow.schemas.manifest import MAX_NAME_BYTES

    parts = PurePosixPath(video_id).parts
    bad = (
        not video_id
        or video_id.startswith("/")
        or ".." in parts
        or "\\" in video_id
        or any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in video_id)
        or any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts)
    )
    if bad:
        raise StoreError(
            f"video id {show(video_id)} cannot be used as a file name inside the export "
            f"(relative, no '..', no control characters, at most {MAX_NAME_BYTES} bytes)"
        )
    return video_id


# ---------------------------------------------------------------------------- staged folder


def _previous_export(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_out(out: Path, store: FeatureStore, fmt: str) -> None:
    """Refuse an ``--out`` that holds anything but a previous export of this store and format."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"export: --out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    prev = _previous_export(out)
    if prev is None:
        raise ConfigError(
            f"export: --out {out} is not empty and holds no {MARKER}; choose an empty or new folder"
        )
    if (prev.get("store") or {}).get("uuid") != store.uuid or prev.get("format") != fmt:
        raise ConfigError(
            f"export: --out {out} holds a {prev.get('format')!r} export of store "
            f"{(prev.get('store') or {}).get('uuid')}; it is only replaced by the same format "
            f"of the same store ({fmt!r}, {store.uuid}); choose another --out"
        )


@contextmanager
def staged(out: Path) -> Iterator[Target]:
    """Yield a staging Target; on success move it to ``out`` (replacing a previous export)."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = out.parent / f".{out.name}.tmp-{tag}"
    staging.mkdir()
    try:
        yield Target(staging=staging, final=out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{tag}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------- videos


def videos_of(store: FeatureStore, task: str) -> Any:
    """The store's videos of one task, in row order (any status)."""
    v = store.videos
    return v[v["task"] == task] if len(v) else v


def is_exportable(video: Any) -> bool:
    """A video with features: status ok and at least one clip."""
    return video["status"] == "ok" and int(video["clip_count"]) > 0


def video_seconds(video: Any) -> tuple[float, float]:
    """``(fps, duration)`` with ``duration = num_frames / fps`` when both are known (OpenTAD
    derives fps as frame / duration, so the two must agree)."""
    fps, n, d = float(video["fps"]), int(video["num_frames"]), float(video["duration"])
    if fps > 0 and n > 0:
        return fps, n / fps
    return fps, d


def store_summary(store: FeatureStore) -> dict[str, Any]:
    prov = store.provenance
    return {
        "path": str(store.path),
        "uuid": store.uuid,
        "encoder": store.encoder,
        "anonymized": bool(prov.get("anonymized")),
        "adapter_digest": prov.get("adapter_digest"),
        "source_store_uuid": prov.get("source_store_uuid"),
        "manifest_digest": prov.get("manifest_digest"),
    }


def clip_geometry(store: FeatureStore) -> dict[str, int]:
    """Frame geometry of dense clips, the numbers downstream configs need.

    ``feat_stride`` is the start-to-start step of dense clips in source frames
    (``dense_stride``); ``num_frames`` the frames one clip spans (``clip_len * frame_stride``);
    ``offset_frames`` the centre of the first clip (``num_frames / 2``).
    """
    from aamflow.stages.eval.data import clip_geometry as head_geometry

    s = store.sampling
    stride, span = head_geometry(store, "tad")  # the TAD head's time convention, shared
    return {
        "feat_stride": stride,
        "num_frames": span,
        "offset_frames": span // 2,
        "clip_len": int(s.get("clip_len", 16)),
        "frame_stride": int(s.get("frame_stride", 1)),
        "input_dim": store.feature_dim,
    }
