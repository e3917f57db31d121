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
from aamflow.schemas.layout import crop_names, view_crop
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
    ``target`` (``crops``: the resolved :class:`CropPlan`) and returns a JSON-able summary
    (counts, config values), recorded in the marker.
    """

    name: str
    description: str
    has_crops: bool  # False: one [T, C] file per video, the centre crop
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


# ------------------------------------------------------------------------------- crops


@dataclass(frozen=True, kw_only=True)
class CropPlan:
    """Which views of each clip an export writes.

    ``count`` views per clip: all the store's real crops, its centre crop alone
    (``count == 1``), or ``count`` copies of the centre crop when ``repeated``
    (``--repeat-crops``: a stand-in for tools that insist on ten crops, never real crops).
    """

    count: int
    store_crops: int
    repeated: bool = False

    @property
    def names(self) -> list[str]:
        if self.repeated or self.count == 1:
            return ["centre"] * self.count
        return list(crop_names(self.store_crops))

    def views(self, feats: np.ndarray) -> np.ndarray:
        """float32 ``[T, count, D]`` from a video's stored ``[T, D]`` or ``[T, crop, D]``."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim == 2:
            feats = feats[:, None, :]
        if self.repeated or self.count == 1:
            centre = feats[:, view_crop(feats.shape[1])][:, None, :]
            return np.repeat(centre, self.count, axis=1)
        return feats

    def describe(self) -> str:
        """One sentence for an export README."""
        if self.repeated:
            return (
                f"**{self.count} copies of one view** (`--repeat-crops {self.count}`): the "
                f"store holds {self.store_crops} crop per clip, repeated so that a tool which "
                "expects ten crops runs. These are not real crops; a real ten-crop store "
                "comes from `aamflow extract --crops 10`."
            )
        if self.count == 1 and self.store_crops > 1:
            return "**1 crop per clip**: the centre crop of the store's ten (`--crops 1`)."
        if self.count == 1:
            return "**1 crop per clip**: the encoder's centre crop (a one-crop store)."
        return (
            f"**{self.count} real crops per clip** (ten-crop: the 4 corners and the centre of "
            "the frame, then the same of its mirror image, in this order: "
            + ", ".join(self.names)
            + ")."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "store_crops": self.store_crops,
            "repeated": self.repeated,
            "names": self.names,
        }


def crop_plan(
    store: FeatureStore, fmt: str, has_crops: bool, crops: int | None, repeat: int | None
) -> CropPlan:
    """Resolve ``--crops`` / ``--repeat-crops`` against the store; ConfigError when they do
    not fit (before anything is written)."""
    held = store.crops
    if not has_crops:
        if crops not in (None, 1) or repeat is not None:
            raise ConfigError(
                f"export: the {fmt} layout has no crop axis (one [T, C] file per video, the "
                "centre crop); drop --crops / --repeat-crops"
            )
        return CropPlan(count=1, store_crops=held)
    if repeat is not None:
        if held > 1:
            raise ConfigError(
                f"export: {store.path} holds {held} real crops per clip; use --crops {held} "
                "(the default) instead of --repeat-crops"
            )
        return CropPlan(count=repeat, store_crops=held, repeated=True)
    if crops is None:
        return CropPlan(count=held, store_crops=held)
    if crops not in (1, held):
        hint = (
            "extract a ten-crop store (aamflow extract --crops 10), or pass --repeat-crops "
            f"{crops} to repeat its single view (not real crops)"
            if held == 1
            else "choose 1 (the centre crop) or 10"
        )
        raise ConfigError(
            f"export: --crops {crops}: {store.path} holds {held} crop(s) per clip; {hint}"
        )
    return CropPlan(count=crops, store_crops=held)


# ---------------------------------------------------------------------------- README parts


def store_section(store: FeatureStore, crops: CropPlan | None = None) -> str:
    """The README section every export starts with: which store, anonymized or raw, crops."""
    prov = store.provenance
    enc = store.encoder
    if prov.get("anonymized"):
        status = (
            f"**yes**: anonymized by adapter `{prov.get('adapter_digest')}` from raw store "
            f"`{prov.get('source_store_uuid')}`"
        )
    else:
        status = (
            "**no: raw encoder features.** This export carries every private attribute the "
            "encoder saw; anonymize the store first (`aamflow anonymize`) unless that is intended"
        )
    rows = [
        ("store", f"`{Path(store.path).absolute()}` (uuid `{store.uuid}`)"),
        ("anonymized", status),
        ("adapter digest", f"`{prov.get('adapter_digest')}`" if prov.get("anonymized") else "none"),
        (
            "encoder",
            f"`{enc.get('name')}`, dim {store.feature_dim}, weights `{enc.get('weights_digest')}`",
        ),
    ]
    if crops is not None:
        rows.append(("crops", crops.describe()))
    table = "".join(f"| {k} | {v} |\n" for k, v in rows)
    return f"## The store\n\n| | |\n|---|---|\n{table}"


@dataclass(frozen=True, kw_only=True)
class Edit:
    """One source edit a tool needs for an export: in ``file`` (at ``where``), replace the
    literal text ``old`` (every occurrence) with ``new``."""

    file: str
    where: str
    old: str
    new: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "where": self.where, "old": self.old, "new": self.new}


def edits_table(edits: list[Edit]) -> str:
    """A README table of source edits (empty text when there are none)."""
    if not edits:
        return ""

    def code(text: str) -> str:
        return "`" + text.replace("|", "\\|") + "`"

    rows = "".join(
        f"| `{e.file}` | {e.where} | {code(e.old)} | {code(e.new)} | {e.why} |\n" for e in edits
    )
    return "| file | where | replace | with | why |\n|---|---|---|---|---|\n" + rows


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
