"""The feature store contract: create, write parts, index, and read.

A store is written as *parts*: part k holds a contiguous range of video rows, is built by
exactly one writer in a staging area and becomes visible with one atomic rename. After all
planned parts are committed, ``index_store`` records their counts in the root attributes
and the store reads as one logical dataset. See README "Feature store layout".
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .backends._base import BACKENDS, Backend
from .errors import StoreError
from .layout import (
    FEATURE_ARRAYS,
    GROUP_COLUMN,
    SOURCE_PATH_COLUMNS,
    SPLIT_CODES,
    STATUS_CODES,
    STORE_SCHEMA,
    STORE_VERSION,
    TABLES,
    TASK_CODES,
    ArraySpec,
    attribute_column,
    crop_names,
    numpy_dtype,
    part_arrays,
    part_name,
    store_crops,
    tail_shape,
    view_crop,
)
from .manifest import LabelSpaces, Sampling, VideoEntry

TOOL_NAME = "aamflow"


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aamflow")
    except PackageNotFoundError:
        return "0+unknown"


def _load_backends() -> None:
    from . import backends  # noqa: F401
    from .backends import hdf5_, zarr_  # noqa: F401  (register themselves)


def backend_for(path: str | Path, fmt: str | None = None) -> Backend:
    """The backend named by ``fmt``, or the one the path's suffix implies (zarr by default)."""
    _load_backends()
    if fmt:
        return BACKENDS.get(fmt)()
    p = Path(path)
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)()
        if p.suffix.lower() in backend.suffixes:
            return backend
    return BACKENDS.get("zarr")()


def detect_backend(path: str | Path) -> Backend:
    """The backend of an existing store, or StoreError naming the path."""
    _load_backends()
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such store")
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)()
        if backend.is_store(p):
            return backend
    if (p / "zarr.json").is_file():
        BACKENDS.get("zarr")().read_attrs(p)  # a damaged zarr.json: says so, by name
    raise StoreError(f"{p}: not an aamflow feature store (no aamflow root attributes)")


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class PartPlan:
    """Part ``index`` holds video rows ``[start, stop)``."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return part_name(self.index)


def plan_parts(n_videos: int, part_size: int) -> list[PartPlan]:
    """Split ``n_videos`` rows into consecutive parts of ``part_size`` videos."""
    if part_size <= 0:
        raise StoreError(f"part size must be > 0, got {part_size}")
    return [
        PartPlan(index=i, start=s, stop=min(s + part_size, n_videos))
        for i, s in enumerate(range(0, n_videos, part_size))
    ]


WRITERS = ("extract", "anonymize")  # the verbs that own (write parts of) a store


def store_writer(meta: Mapping[str, Any]) -> str:
    """The verb that owns a store: ``provenance.writer``, or for stores written before that
    field existed, ``anonymize`` when the store says it is anonymized and ``extract`` if not."""
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), Mapping) else {}
    writer = prov.get("writer")
    if isinstance(writer, str) and writer:
        return writer
    return "anonymize" if prov.get("anonymized") else "extract"


def check_writer(path: str | Path, meta: Mapping[str, Any], writer: str) -> None:
    """Refuse to let ``writer`` add parts to a store another verb owns, so raw features
    never land under an anonymized label and anonymized ones never under a raw one."""
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), Mapping) else {}
    anonymized = bool(prov.get("anonymized"))
    owner = store_writer(meta)
    if owner != writer or anonymized != (writer == "anonymize"):
        kind = "an anonymized store" if anonymized else "a raw feature store"
        raise StoreError(
            f"{path}: is {kind} written by {owner}; {writer} never writes into it "
            "(choose another --out, or delete that store first)"
        )


def new_store_attrs(
    *,
    encoder: dict[str, Any],
    sampling: Sampling | dict[str, Any],
    label_spaces: LabelSpaces,
    plan: Sequence[PartPlan],
    provenance: dict[str, Any] | None = None,
    stripped: Sequence[str] = (),
) -> dict[str, Any]:
    """Root attributes for a new store (``{"aamflow": {...}}``).

    ``stripped`` names part arrays the store leaves out (an anonymized store's private
    labels and source paths; see ``private_columns``).
    """
    prov = {
        "store_uuid": str(uuid.uuid4()),
        "tool": TOOL_NAME,
        "tool_version": tool_version(),
        "created_utc": utcnow(),
        "writer": "extract",
        "manifest_digest": None,
        "anonymized": False,
        "adapter_digest": None,
        "source_store_uuid": None,
    }
    prov.update(provenance or {})
    samp = sampling.to_dict() if isinstance(sampling, Sampling) else dict(sampling)
    for key in ("dim", "name"):
        if key not in encoder:
            raise StoreError(f"encoder identity needs {key!r}")
    return {
        "aamflow": {
            "schema": STORE_SCHEMA,
            "version": STORE_VERSION,
            "encoder": dict(encoder),
            "feature_dim": int(encoder["dim"]),
            "clip_len": int(samp.get("clip_len", 16)),
            "sampling": samp,
            "label_spaces": label_spaces.to_dict(),
            "provenance": prov,
            "plan": [{"name": p.name, "start": p.start, "stop": p.stop} for p in plan],
            "stripped": sorted(stripped),
            "index": None,
        }
    }


def private_columns(spaces: LabelSpaces, *, labels: bool = True, paths: bool = True) -> list[str]:
    """Part arrays an anonymized store leaves out: with ``labels`` every private-attribute
    column and the bias group, with ``paths`` the columns that hold source paths."""
    cols = (
        ([attribute_column(n) for n in spaces.all_attributes()] + [GROUP_COLUMN]) if labels else []
    )
    return sorted(cols + (list(SOURCE_PATH_COLUMNS) if paths else []))


def store_arrays(meta: Mapping[str, Any]) -> dict[str, ArraySpec]:
    """Every array a part of this store holds (the layout minus ``stripped``)."""
    spaces = LabelSpaces.from_dict(meta["label_spaces"])
    stripped = set(meta.get("stripped") or ())
    return {
        k: v
        for k, v in part_arrays(list(spaces.all_attributes()), store_crops(meta)).items()
        if k not in stripped
    }


def create_store(
    path: str | Path, attrs: dict[str, Any], *, fmt: str | None = None, exist_ok: bool = False
) -> Backend:
    """Create an empty store with these root attributes.

    With ``exist_ok`` an existing store is reused when its identity-defining attributes
    (encoder, sampling, label spaces, plan) match: that is how an interrupted run resumes.
    """
    p = Path(path)
    backend = backend_for(p, fmt)
    if p.exists():
        return _reuse_store(p, attrs, exist_ok)
    try:
        backend.create(p, attrs)
    except OSError:
        if not p.exists():
            raise
        # another writer created it first (two runs started together): resume theirs
        return _reuse_store(p, attrs, exist_ok)
    return backend


def _reuse_store(p: Path, attrs: dict[str, Any], exist_ok: bool) -> Backend:
    if not exist_ok:
        raise StoreError(f"{p}: already exists (use --overwrite to replace it)")
    existing = detect_backend(p)
    old = existing.read_attrs(p)["aamflow"]
    new = attrs["aamflow"]
    check_writer(p, old, store_writer(new))
    for key in ("encoder", "sampling", "label_spaces", "plan", "stripped"):
        if (old.get(key) or None) != (new.get(key) or None):
            raise StoreError(
                f"{p}: exists with a different {key}; use --overwrite or another --out"
            )
    return existing


# ------------------------------------------------------------------------- writing


@dataclass(kw_only=True)
class VideoRecord:
    """Everything one video contributes to a part. Arrays may be empty (failed video)."""

    row: int
    id: str
    path: str
    split: str
    task: str = "ar"
    subset: str = "main"
    num_frames: int = -1
    fps: float = math.nan
    duration: float = math.nan
    width: int = -1
    height: int = -1
    status: str = "ok"
    error: str = ""
    decoder: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    clip_features: np.ndarray | None = None
    clip_frames: np.ndarray | None = None
    clip_time: np.ndarray | None = None
    clip_frame_idx: np.ndarray | None = None
    clip_padded: np.ndarray | None = None
    static_features: np.ndarray | None = None
    static_frame: np.ndarray | None = None
    segments: list[tuple[int, float, float]] = field(default_factory=list)
    frame_labels: np.ndarray | None = None


def label_codes(entry: VideoEntry, spaces: LabelSpaces) -> dict[str, int]:
    """Integer label columns for a manifest entry (-1 where unknown)."""
    codes = {
        "label_action": spaces.actions.index(entry.action) if entry.action else -1,
        "label_anomaly": -1 if entry.anomaly is None else int(entry.anomaly),
        "label_group": spaces.groups.index(entry.group) if entry.group else -1,
    }
    for name, values in spaces.all_attributes().items():
        value = entry.attributes.get(name)
        codes[attribute_column(name)] = values.index(value) if value is not None else -1
    return codes


def frame_labels_for(entry: VideoEntry, num_frames: int, fps: float) -> np.ndarray:
    """Per-frame anomaly labels from anomaly segments: frame f is abnormal when its time
    f / fps lies in a segment. Empty for videos without an anomaly label."""
    if entry.anomaly is None or num_frames <= 0:
        return np.zeros(0, np.int8)
    labels = np.zeros(num_frames, np.int8)
    t = np.arange(num_frames) / fps
    for seg in entry.anomaly_segments:
        labels[(t >= seg.start) & (t < seg.end)] = 1
    return labels


def record_from_entry(entry: VideoEntry, row: int, spaces: LabelSpaces) -> VideoRecord:
    """A VideoRecord holding a manifest entry's identity and labels (no features yet)."""
    return VideoRecord(
        row=row,
        id=entry.id,
        path=entry.path,
        split=entry.split,
        task=entry.task,
        subset=entry.subset,
        labels=label_codes(entry, spaces),
        segments=[
            (spaces.actions.index(s.label), s.start, s.end) for s in entry.segments if s.label
        ],
    )


LOCK_STALE_SECONDS = 600.0  # a lock untouched this long belongs to a dead writer


def _locks_dir(path: Path) -> Path:
    return path / "parts" if path.is_dir() else path.with_name(path.name + ".parts")


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PartLock:
    """One writer per part: an exclusive lock file beside the parts, refreshed while the
    part is written. A lock whose process is gone (same host) or that has not been
    refreshed for ``LOCK_STALE_SECONDS`` (any host) is stale and taken over."""

    def __init__(self, path: Path, name: str) -> None:
        import json
        import os
        import socket
        import time

        self.file = _locks_dir(path) / f".lock-{name}"
        self.file.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": utcnow()}
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.file.read_text() or "{}")
                    age = time.time() - self.file.stat().st_mtime
                except (OSError, ValueError):
                    continue  # released or half-written meanwhile: try again
                dead = other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", -1)))
                if dead or age > LOCK_STALE_SECONDS:
                    self.file.unlink(missing_ok=True)
                    continue
                raise StoreError(
                    f"{path}: part {name} is being written by pid {other.get('pid')} on "
                    f"{other.get('host')} since {other.get('since')}; wait for that run, or "
                    f"delete {self.file} if it is dead"
                ) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me))
            self._touched = time.monotonic()
            return
        raise StoreError(f"{path}: could not lock part {name} ({self.file})")

    def touch(self) -> None:
        import os
        import time

        if time.monotonic() - self._touched > 30:
            os.utime(self.file)
            self._touched = time.monotonic()

    def release(self) -> None:
        self.file.unlink(missing_ok=True)


def _clear_stale_staging(path: Path, name: str) -> None:
    import shutil

    for p in _locks_dir(path).glob(f".tmp-{name}-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


class PartWriter:
    """Writes the videos of one part, in row order, then commits it atomically."""

    def __init__(self, path: Path, backend: Backend, attrs: dict[str, Any], plan: PartPlan):
        meta = attrs["aamflow"]
        self.meta = meta
        self.plan = plan
        self.crops = store_crops(meta)
        self.specs = store_arrays(meta)
        self.dim = int(meta["feature_dim"])
        self.clip_len = int(meta["clip_len"])
        tails = {
            k: tail_shape(s, self.dim, self.clip_len, self.crops) for k, s in self.specs.items()
        }
        self.tails = tails
        hint = {k: plan.stop - plan.start for k, s in self.specs.items() if s.table == "videos"}
        self.lock = PartLock(path, plan.name)
        _clear_stale_staging(path, plan.name)  # left by a writer that died; we hold the lock
        try:
            self.raw = backend.part_writer(path, plan.name, self.specs, tails, hint)
        except BaseException:
            self.lock.release()
            raise
        self.counts = dict.fromkeys(("videos", "clips", "static", "segments", "frames"), 0)
        self.next_row = plan.start
        # the videos table is small (one row per video): buffered, written at commit
        self._video_rows: dict[str, list[Any]] = {
            k: [] for k, s in self.specs.items() if s.table == "videos"
        }

    def _col(self, name: str, values: Any, n: int | None = None) -> None:
        spec = self.specs[name]
        dtype = numpy_dtype(spec)
        tail = self.tails[name]
        if values is None:
            arr = np.zeros((0, *tail), dtype=dtype)
        else:
            is_str = dtype.kind == "O"
            arr = np.asarray(values, dtype=None if is_str else dtype)
            if is_str:
                arr = np.asarray([str(v) for v in np.atleast_1d(arr).tolist()], dtype=object)
        if n is not None and len(arr) != n:
            raise StoreError(f"{self.plan.name}: column {name} has {len(arr)} rows, expected {n}")
        if arr.shape[1:] != tail:
            raise StoreError(
                f"{self.plan.name}: column {name} has shape {arr.shape}, rows need {tail}"
            )
        self.raw.append(name, arr)

    def add(self, rec: VideoRecord) -> None:
        """Append one video. Rows must arrive in order: ``plan.start, plan.start + 1, ...``."""
        self.lock.touch()
        if rec.row != self.next_row or rec.row >= self.plan.stop:
            raise StoreError(f"{self.plan.name}: expected video row {self.next_row}, got {rec.row}")
        self.next_row += 1
        n_clips = 0 if rec.clip_features is None else len(rec.clip_features)
        n_static = 0 if rec.static_features is None else len(rec.static_features)
        n_frames = 0 if rec.frame_labels is None else len(rec.frame_labels)
        c = self.counts
        one = {
            "video_row": rec.row,
            "video_id": rec.id,
            "video_path": rec.path,
            "video_split": SPLIT_CODES.index(rec.split),
            "video_task": TASK_CODES.index(rec.task),
            "video_subset": rec.subset,
            "video_num_frames": rec.num_frames,
            "video_fps": rec.fps,
            "video_duration": rec.duration,
            "video_width": rec.width,
            "video_height": rec.height,
            "video_status": STATUS_CODES.index(rec.status),
            "video_error": rec.error,
            "video_decoder": rec.decoder,
            "video_clip_start": c["clips"],
            "video_clip_count": n_clips,
            "video_static_start": c["static"],
            "video_static_count": n_static,
            "video_segment_start": c["segments"],
            "video_segment_count": len(rec.segments),
            "video_frame_start": c["frames"],
            "video_frame_count": n_frames,
        }
        for name in self.specs:
            if name.startswith("label_"):
                one[name] = rec.labels.get(name, -1)
        for name, value in one.items():
            if name in self._video_rows:  # a stripped column is not written at all
                self._video_rows[name].append(value)
        if n_clips:
            self._col("clip_features", rec.clip_features, n_clips)
            self._col("clip_video", np.full(n_clips, rec.row), n_clips)
            self._col("clip_frames", rec.clip_frames, n_clips)
            self._col("clip_time", rec.clip_time, n_clips)
            self._col("clip_frame_idx", rec.clip_frame_idx, n_clips)
            padded = rec.clip_padded if rec.clip_padded is not None else np.zeros(n_clips)
            self._col("clip_padded", padded, n_clips)
        if n_static:
            self._col("static_features", rec.static_features, n_static)
            self._col("static_video", np.full(n_static, rec.row), n_static)
            self._col("static_frame", rec.static_frame, n_static)
        if rec.segments:
            seg = np.asarray(rec.segments, dtype=np.float64).reshape(-1, 3)
            self._col("segment_video", np.full(len(seg), rec.row))
            self._col("segment_label", seg[:, 0].astype(np.int32))
            self._col("segment_time", seg[:, 1:])
        if n_frames:
            self._col("frame_labels", rec.frame_labels)
        c["videos"] += 1
        c["clips"] += n_clips
        c["static"] += n_static
        c["segments"] += len(rec.segments)
        c["frames"] += n_frames

    def append_raw(self, name: str, rows: np.ndarray) -> None:
        """Append rows to one array directly (used by stages that copy a part table-wise)."""
        self._col(name, rows)

    def commit(
        self, extra: dict[str, Any] | None = None, counts: dict[str, int] | None = None
    ) -> None:
        if counts is None and self.next_row != self.plan.stop:
            raise StoreError(
                f"{self.plan.name}: only rows {self.plan.start}..{self.next_row - 1} written, "
                f"plan needs up to {self.plan.stop - 1}"
            )
        attrs = {
            "name": self.plan.name,
            "start": self.plan.start,
            "stop": self.plan.stop,
            "counts": dict(counts or self.counts),
            "committed_utc": utcnow(),
        }
        for name, values in self._video_rows.items():
            if values:
                self._col(name, values)
        attrs.update(extra or {})
        self.raw.commit(attrs)
        self.lock.release()

    def abort(self) -> None:
        try:
            self.raw.abort()
        finally:
            self.lock.release()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def open_part_writer(path: str | Path, plan: PartPlan, *, writer: str | None = None) -> PartWriter:
    """A writer for one planned part of an existing store (owned by ``writer`` when given)."""
    p = Path(path)
    backend = detect_backend(p)
    attrs = backend.read_attrs(p)
    if writer is not None:
        check_writer(p, attrs["aamflow"], writer)
    return PartWriter(p, backend, attrs, plan)


def store_plan(path: str | Path) -> list[PartPlan]:
    """The parts a store was planned with."""
    p = Path(path)
    meta = detect_backend(p).read_attrs(p)["aamflow"]
    return [PartPlan(index=i, start=d["start"], stop=d["stop"]) for i, d in enumerate(meta["plan"])]


def committed_parts(path: str | Path) -> set[str]:
    p = Path(path)
    return set(detect_backend(p).committed_parts(p))


def remove_store(path: str | Path) -> None:
    """Delete a whole store; refuses anything that is not an aamflow store."""
    import shutil

    p = Path(path)
    detect_backend(p)
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()
        shutil.rmtree(p.with_name(p.name + ".parts"), ignore_errors=True)


def index_store(
    path: str | Path, extra: dict[str, Any] | None = None, *, writer: str | None = None
) -> dict[str, Any]:
    """Record every planned part's counts in the root attributes; the store is then complete.

    Every part is opened with the reader's checks, so a damaged part is never indexed.
    Raises StoreError naming the parts still missing or damaged, or when ``writer`` is given
    and does not own the store.
    """
    p = Path(path)
    backend = detect_backend(p)
    attrs = backend.read_attrs(p)
    meta = attrs["aamflow"]
    if writer is not None:
        check_writer(p, meta, writer)
    have = set(backend.committed_parts(p))
    names = [d["name"] for d in meta["plan"]]
    missing = [n for n in names if n not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise StoreError(f"{p}: {len(missing)} part(s) not committed yet: {shown}")
    parts = []
    totals = dict.fromkeys(("videos", "clips", "static", "segments", "frames"), 0)
    failed = 0
    for name in names:
        part = open_checked_part(p, backend, meta, name)
        try:
            counts = dict(part.attrs["counts"])
            failed += int(np.sum(np.asarray(part["video_status"][:]) != 0))
        finally:
            part.close()
        parts.append({"name": name, "counts": counts})
        for k in totals:
            totals[k] += counts[k]
    meta["index"] = {
        "parts": parts,
        "totals": totals,
        "failed_videos": failed,
        "indexed_utc": utcnow(),
    }
    if extra:
        meta.update(extra)
    backend.write_attrs(p, attrs)
    backend.finalize(p, names)
    return meta["index"]


# ------------------------------------------------------------------------- reading


def _counts(value: Any) -> dict[str, int] | None:
    """A part's ``counts`` attribute, or None when it is not a mapping of table -> int >= 0."""
    if not isinstance(value, Mapping):
        return None
    out = {}
    for t in TABLES:
        n = value.get(t)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return None
        out[t] = n
    return out


def part_problems(
    part: Any, name: str, meta: Mapping[str, Any], index_counts: Any = None
) -> list[str]:
    """Structural problems of one opened part (empty when sound): arrays missing or not
    allowed, shapes that disagree with the store's feature dim, the commit record or the
    part's counts, counts that disagree with the plan or the index, and missing chunks.
    Cheap: reads array metadata and chunk listings, never the data."""
    problems: list[str] = []
    specs = store_arrays(meta)
    dim, clip_len = int(meta["feature_dim"]), int(meta["clip_len"])
    attrs = part.attrs if isinstance(part.attrs, Mapping) else {}
    counts = _counts(attrs.get("counts"))
    if counts is None:
        problems.append(f"part {name}: its attributes hold no valid counts")
    rows = attrs.get("rows") if isinstance(attrs.get("rows"), Mapping) else {}
    try:
        names = set(part.names())
    except Exception as e:
        return [*problems, f"part {name}: arrays cannot be listed ({type(e).__name__})"]
    for arr in sorted(names & set(meta.get("stripped") or ())):
        problems.append(f"part {name}: array {arr} is present but the store strips it")
    for arr, spec in specs.items():
        if arr not in names:
            problems.append(f"part {name}: array {arr} is missing")
            continue
        try:
            shape = tuple(part[arr].shape)
            missing = part.missing_chunks(arr)
        except Exception as e:
            problems.append(f"part {name}: array {arr}: unreadable ({type(e).__name__})")
            continue
        tail = tail_shape(spec, dim, clip_len, store_crops(meta))
        if shape[1:] != tail:
            problems.append(f"part {name}: array {arr}: shape {shape}, rows must be {tail}")
        recorded = rows.get(arr)
        if recorded is not None and recorded != shape[0]:
            problems.append(
                f"part {name}: array {arr}: {shape[0]} rows, commit recorded {recorded}"
            )
        if counts is not None and shape[0] != counts[spec.table]:
            problems.append(
                f"part {name}: array {arr}: {shape[0]} rows, the part's counts say "
                f"{counts[spec.table]} {spec.table}"
            )
        if missing:
            problems.append(f"part {name}: array {arr}: {missing} chunk(s) missing")
    planned = {d.get("name"): d for d in meta.get("plan") or () if isinstance(d, Mapping)}
    entry = planned.get(name)
    if counts is not None and entry is not None:
        want = int(entry["stop"]) - int(entry["start"])
        if counts["videos"] != want:
            problems.append(f"part {name}: {counts['videos']} videos, the plan says {want}")
    if counts is not None and index_counts is not None and _counts(index_counts) != counts:
        problems.append(f"part {name}: counts {counts} differ from the index's {index_counts}")
    return problems


def open_checked_part(
    path: Path, backend: Backend, meta: Mapping[str, Any], name: str, index_counts: Any = None
) -> Any:
    """Open one committed part for reading, refusing a damaged one by name (a deleted chunk
    would otherwise read back as fill values, e.g. labels as -1)."""
    try:
        part = backend.open_part(path, name)
    except Exception as e:
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise StoreError(f"{path}: part {name} cannot be opened ({first})") from None
    try:
        problems = part_problems(part, name, meta, index_counts)
    except (KeyError, TypeError, ValueError) as e:  # an edited root: plan, dims, spaces
        part.close()
        raise StoreError(
            f"{path}: root attributes are malformed ({type(e).__name__}: {e})"
        ) from None
    if problems:
        part.close()
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(
            f"{path}: {problems[0]}{more}; the part is damaged (aamflow inspect {path} lists "
            "the problems)"
        )
    return part


@dataclass(frozen=True)
class VideoView:
    """One video's features and labels, read from its part."""

    row: int
    id: str
    split: str
    task: str
    status: str
    error: str
    num_frames: int
    fps: float
    clip_features: np.ndarray
    clip_frames: np.ndarray
    clip_time: np.ndarray
    static_features: np.ndarray
    static_frame: np.ndarray
    segments: np.ndarray  # [n, 3]: label code, start s, end s
    frame_labels: np.ndarray
    labels: dict[str, int]


class FeatureStore:
    """Read access to a complete (indexed) store as one logical dataset.

    Use ``open_store(path)``. Tables are pandas DataFrames, features are numpy per video or
    one ``dask.array`` over all parts.
    """

    def __init__(self, path: Path, backend: Backend, allow_incomplete: bool = False) -> None:
        self.path = path
        self.backend = backend
        self._parts: dict[str, Any] = {}
        self.attrs = backend.read_attrs(path)
        meta = self.attrs.get("aamflow")
        if not isinstance(meta, dict):
            raise StoreError(f"{path}: not an aamflow feature store (no aamflow root attributes)")
        self.meta: dict[str, Any] = meta
        if self.meta.get("schema") != STORE_SCHEMA:
            raise StoreError(f"{path}: schema {self.meta.get('schema')!r} is not {STORE_SCHEMA}")
        version = self.meta.get("version", 0)
        if not isinstance(version, int) or version > STORE_VERSION:
            raise StoreError(f"{path}: store version {version!r} is newer than this aamflow")
        try:
            self._check_meta()
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(
                f"{path}: root attributes are malformed ({type(e).__name__}: {e})"
            ) from None
        index = self.meta.get("index")
        self.complete = index is not None
        self.part_counts: list[dict[str, int]]
        if index is not None:
            self.part_names = [d["name"] for d in index["parts"]]
            self.part_counts = [d["counts"] for d in index["parts"]]
        elif not allow_incomplete:
            done = len(backend.committed_parts(path))
            raise StoreError(
                f"{path}: store is not indexed ({done}/{len(self.meta['plan'])} parts committed); "
                "finish or resume the run that writes it"
            )
        else:
            # an unfinished store (killed run, --part slices): its committed parts, counts
            # read raw so that a damaged part is reported by validate() rather than raised
            committed = set(backend.committed_parts(path))
            self.part_names = [d["name"] for d in self.meta["plan"] if d["name"] in committed]
            self.part_counts = [self._raw_counts(n) for n in self.part_names]

    def _check_meta(self) -> None:
        """Types and cross-checks of the root attributes every reader relies on."""
        m = self.meta
        int(m["feature_dim"]), int(m["clip_len"])
        LabelSpaces.from_dict(m["label_spaces"])
        for d in m["plan"]:
            int(d["start"]), int(d["stop"]), str(d["name"])
        if not isinstance(m.get("provenance"), dict):
            raise TypeError("provenance is not a mapping")
        index = m.get("index")
        if index is None:
            return
        names = [d["name"] for d in index["parts"]]
        if names != [d["name"] for d in m["plan"]]:
            raise ValueError("the index lists other parts than the plan")
        counts = [_counts(d["counts"]) for d in index["parts"]]
        if any(c is None for c in counts):
            raise ValueError("an index entry holds no valid counts")
        totals = _counts(index["totals"])
        if totals != {t: sum(c[t] for c in counts) for t in TABLES}:  # type: ignore[index]
            raise ValueError("the index totals do not add up to its part counts")
        plan_videos = [int(d["stop"]) - int(d["start"]) for d in m["plan"]]
        if [c["videos"] for c in counts] != plan_videos:  # type: ignore[index]
            raise ValueError("the index's video counts differ from the plan")

    def _raw_counts(self, name: str) -> dict[str, int]:
        try:
            part = self.backend.open_part(self.path, name)
        except Exception:
            return dict.fromkeys(TABLES, 0)
        try:
            return _counts(
                part.attrs.get("counts") if isinstance(part.attrs, Mapping) else None
            ) or dict.fromkeys(TABLES, 0)
        finally:
            part.close()

    # -- metadata
    @property
    def uuid(self) -> str:
        return self.meta["provenance"]["store_uuid"]

    @property
    def encoder(self) -> dict[str, Any]:
        return self.meta["encoder"]

    @property
    def feature_dim(self) -> int:
        return int(self.meta["feature_dim"])

    @property
    def sampling(self) -> dict[str, Any]:
        return self.meta["sampling"]

    @property
    def label_spaces(self) -> LabelSpaces:
        return LabelSpaces.from_dict(self.meta["label_spaces"])

    @property
    def provenance(self) -> dict[str, Any]:
        return self.meta["provenance"]

    @property
    def format(self) -> str:
        return self.backend.name

    @property
    def stripped(self) -> list[str]:
        """Part arrays this store leaves out (private labels and paths of an anonymized store)."""
        return list(self.meta.get("stripped") or [])

    @cached_property
    def specs(self) -> dict[str, ArraySpec]:
        """Every array a part of this store holds."""
        return store_arrays(self.meta)

    def open_part(self, name: str) -> Any:
        """A new checked handle on one part (for threads that read beside the main one);
        the caller closes it."""
        k = self.part_names.index(name)
        counts = self.part_counts[k] if self.complete else None
        return open_checked_part(self.path, self.backend, self.meta, name, counts)

    def _part(self, name: str) -> Any:
        if name not in self._parts:
            self._parts[name] = self.open_part(name)
        return self._parts[name]

    @cached_property
    def _table_offsets(self) -> dict[str, np.ndarray]:
        """Global row of each part's first row, per table (computed once, not per video)."""
        return {
            t: np.concatenate([[0], np.cumsum([c[t] for c in self.part_counts])]).astype(np.int64)
            for t in ("videos", "clips", "static", "segments", "frames")
        }

    @cached_property
    def _part_index(self) -> dict[str, int]:
        return {name: k for k, name in enumerate(self.part_names)}

    def _offsets(self, table: str) -> np.ndarray:
        return self._table_offsets[table]

    def read(self, name: str) -> np.ndarray:
        """One array concatenated over all parts, as numpy."""
        return self.read_many([name])[name]

    def read_many(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Several arrays, each concatenated over all parts; reads run concurrently, since
        per-array latency, not bandwidth, dominates small columns."""
        from concurrent.futures import ThreadPoolExecutor

        parts = [
            self._part(p) for p in self.part_names
        ]  # open serially: the cache is not thread-safe

        def one(job: tuple[int, str]) -> np.ndarray:
            k, name = job
            try:
                return np.asarray(parts[k][name][:])
            except StoreError:
                raise
            except Exception as e:  # codec checksum failures surface here
                raise StoreError(
                    f"{self.path}: part {self.part_names[k]}, array {name}: unreadable ({e})"
                ) from None

        jobs = [(k, n) for n in names for k in range(len(parts))]
        with ThreadPoolExecutor(min(16, max(1, len(jobs)))) as pool:
            got = list(pool.map(one, jobs))
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            chunks = got[i * len(parts) : (i + 1) * len(parts)]
            out[name] = np.concatenate(chunks) if chunks else np.zeros(0)
        return out

    def dask(self, name: str) -> Any:
        """One array over all parts as a lazy ``dask.array`` (as stored: a ten-crop store's
        feature arrays keep their crop axis; see :meth:`crop_view`)."""
        import dask.array as da

        return da.concatenate([self._part(p).dask(name) for p in self.part_names], axis=0)

    # -- crops
    @property
    def crops(self) -> int:
        """Spatial views per clip: 1, or 10 for a ten-crop store."""
        return store_crops(self.meta)

    @property
    def crop_names(self) -> tuple[str, ...]:
        """The views along a ten-crop store's crop axis (``schemas.layout.CROP_NAMES``)."""
        return crop_names(self.crops)

    def crop_view(self, features: Any) -> Any:
        """The one view per clip that train-adapter and eval use: the centre crop.

        ``features`` is a block of ``clip_features`` or ``static_features`` rows as stored
        (numpy or dask): ``[n, crop, D]`` in a ten-crop store becomes ``[n, D]``; a one-crop
        store's ``[n, D]`` is returned as it is. Feature arrays are the layout's only 3-D
        arrays, so other arrays pass through unchanged too.
        """
        if getattr(features, "ndim", 0) != 3:
            return features
        return features[:, view_crop(features.shape[1])]

    def clip_features(self, *, all_crops: bool = False) -> Any:
        """``dask.array`` ``[N_clips, D]`` (the centre crop), or ``[N_clips, crop, D]``."""
        x = self.dask("clip_features")
        return x if all_crops else self.crop_view(x)

    def static_features(self, *, all_crops: bool = False) -> Any:
        """``dask.array`` ``[N_static, D]`` (the centre crop), or ``[N_static, crop, D]``."""
        x = self.dask("static_features")
        return x if all_crops else self.crop_view(x)

    @cached_property
    def videos(self) -> Any:
        """The videos table (pandas), one row per video, with global clip/static offsets."""
        import pandas as pd

        cols = [n for n, spec in self.specs.items() if spec.table == "videos"]
        cols = cols if self.part_names else []
        data = {c.removeprefix("video_"): v for c, v in self.read_many(cols).items()}
        df = pd.DataFrame(data)
        if not len(df):
            return df
        part_of = np.repeat(
            np.arange(len(self.part_names)), [c["videos"] for c in self.part_counts]
        )
        for table, col in (
            ("clips", "clip_start"),
            ("static", "static_start"),
            ("segments", "segment_start"),
            ("frames", "frame_start"),
        ):
            df[col] = df[col].to_numpy() + self._offsets(table)[part_of]
        df["part"] = np.asarray(self.part_names, dtype=object)[part_of]
        df["split"] = np.asarray(SPLIT_CODES, dtype=object)[df["split"].to_numpy()]
        df["task"] = np.asarray(TASK_CODES, dtype=object)[df["task"].to_numpy()]
        df["status"] = np.asarray(STATUS_CODES, dtype=object)[df["status"].to_numpy()]
        return df.set_index("row", drop=False)

    @cached_property
    def clips(self) -> Any:
        """The clips table (pandas): video row, frame range, time range, padded flag."""
        import pandas as pd

        frames = self.read("clip_frames").reshape(-1, 2)
        times = self.read("clip_time").reshape(-1, 2)
        return pd.DataFrame(
            {
                "video": self.read("clip_video"),
                "frame_start": frames[:, 0],
                "frame_end": frames[:, 1],
                "t_start": times[:, 0],
                "t_end": times[:, 1],
                "padded": self.read("clip_padded").astype(bool),
            }
        )

    @cached_property
    def static(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {"video": self.read("static_video"), "frame": self.read("static_frame")}
        )

    @cached_property
    def segments(self) -> Any:
        """TAD ground truth (pandas): video row, label code, start and end seconds."""
        import pandas as pd

        t = self.read("segment_time").reshape(-1, 2)
        return pd.DataFrame(
            {
                "video": self.read("segment_video"),
                "label": self.read("segment_label"),
                "start": t[:, 0],
                "end": t[:, 1],
            }
        )

    def __len__(self) -> int:
        return len(self.videos)

    def video(self, row: int, *, all_crops: bool = False) -> VideoView:
        """Features and labels of the video at global row ``row``; the features are the
        centre crop ``[n, D]`` unless ``all_crops`` (then ``[n, crop, D]`` in a ten-crop store)."""
        pick = (lambda x: x) if all_crops else self.crop_view
        v = self.videos.loc[row]
        part = self._part(v["part"])
        k = self._part_index[v["part"]]
        local = {
            t: int(v[f"{col}_start"]) - int(self._offsets(t)[k])
            for t, col in (
                ("clips", "clip"),
                ("static", "static"),
                ("segments", "segment"),
                ("frames", "frame"),
            )
        }
        cs, cn = local["clips"], int(v["clip_count"])
        ss, sn = local["static"], int(v["static_count"])
        gs, gn = local["segments"], int(v["segment_count"])
        fs, fn = local["frames"], int(v["frame_count"])
        seg_t = np.asarray(part["segment_time"][gs : gs + gn]).reshape(-1, 2)
        seg_l = np.asarray(part["segment_label"][gs : gs + gn])
        return VideoView(
            row=int(row),
            id=str(v["id"]),
            split=str(v["split"]),
            task=str(v["task"]),
            status=str(v["status"]),
            error=str(v.get("error", "")),
            num_frames=int(v["num_frames"]),
            fps=float(v["fps"]),
            clip_features=pick(np.asarray(part["clip_features"][cs : cs + cn])),
            clip_frames=np.asarray(part["clip_frames"][cs : cs + cn]),
            clip_time=np.asarray(part["clip_time"][cs : cs + cn]),
            static_features=pick(np.asarray(part["static_features"][ss : ss + sn])),
            static_frame=np.asarray(part["static_frame"][ss : ss + sn]),
            segments=np.column_stack([seg_l, seg_t]) if gn else np.zeros((0, 3)),
            frame_labels=np.asarray(part["frame_labels"][fs : fs + fn])
            if fn
            else np.zeros(0, np.int8),
            labels={c: int(v[c]) for c in v.index if c.startswith("label_")},
        )

    def to_xarray(self) -> Any:
        """The logical store as one ``xarray.Dataset``, every part concatenated lazily.

        Variables are the part arrays of README "Arrays of a part", with their dimension
        names (``video``, ``clip``, ``static``, ``segment``, ``video_frame``, ``feature``,
        ``crop`` in a ten-crop store, ``bound``, ``clip_frame``). The clip, static-clip,
        segment and frame tables are ``dask`` arrays over the parts (nothing is read until
        computed); the videos table (one row per video) is read, and its ``video_*_start``
        offsets are made global, so they index the concatenated tables. Coordinates:
        ``video`` (the global row), ``video_id``; ``clip_video``, ``clip_time`` and
        ``clip_frames`` on ``clip``; ``static_video``, ``static_frame`` on ``static``;
        ``segment_video`` on ``segment``; ``crop`` (view names) and ``bound``
        (``start``/``end``). Code columns carry CF ``flag_values``/``flag_meanings`` or
        ``labels`` attributes; ``attrs["aamflow"]`` is the store's metadata as JSON.
        """
        import json

        import xarray as xr

        if not self.part_names:
            raise StoreError(f"{self.path}: the store has no committed parts to show")
        spaces = self.label_spaces
        specs = part_arrays(list(spaces.all_attributes()), self.crops)
        names = self._part(self.part_names[0]).names()
        video_cols = [n for n in names if specs.get(n) and specs[n].table == "videos"]
        table = self.read_many(video_cols)
        part_of = np.repeat(
            np.arange(len(self.part_names)), [c["videos"] for c in self.part_counts]
        )
        for tbl, col in (
            ("clips", "video_clip_start"),
            ("static", "video_static_start"),
            ("segments", "video_segment_start"),
            ("frames", "video_frame_start"),
        ):
            if col in table:
                table[col] = table[col] + self._offsets(tbl)[part_of]
        variables: dict[str, Any] = {}
        for name in names:
            spec = specs.get(name)
            if spec is None or name == "video_row":
                continue
            data = table[name] if spec.table == "videos" else self.dask(name)
            if spec.dtype == "str":  # zarr's StringDType and h5py's objects: one plain dtype
                data = np.array([str(x) for x in data.tolist()], dtype=str)
            variables[name] = xr.Variable(spec.dims, data, attrs=_code_attrs(name, spaces))
        coord_names = {
            "video_id",
            "clip_video",
            "clip_time",
            "clip_frames",
            "static_video",
            "static_frame",
            "segment_video",
        }
        coords: dict[str, Any] = {"video": ("video", table["video_row"])}
        coords.update({n: variables.pop(n) for n in sorted(coord_names & set(variables))})
        coords["bound"] = ("bound", np.array(["start", "end"]))
        if self.crops > 1:
            coords["crop"] = ("crop", np.array(self.crop_names))
        attrs = {
            "aamflow": json.dumps(self.meta),
            "schema": self.meta["schema"],
            "store_uuid": self.uuid,
            "feature_dim": self.feature_dim,
            "crops": self.crops,
        }
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    def iter_videos(self) -> Iterator[VideoView]:
        for row in self.videos["row"]:
            yield self.video(int(row))

    def validate(self, deep: bool = False) -> list[str]:
        """Problems found (empty when healthy): missing parts, arrays or chunks, shapes and
        counts that disagree, and with ``deep`` a sha256 check of every array against its
        commit record and a scan of the features for non-finite values."""
        import hashlib

        from .backends.zarr_ import _row_bytes

        problems = []
        committed = set(self.backend.committed_parts(self.path))
        for k, name in enumerate(self.part_names):
            if name not in committed:
                problems.append(f"part {name}: missing")
                continue
            try:  # opened raw: _part refuses damaged parts, validation reports them
                part = self.backend.open_part(self.path, name)
            except Exception as e:
                problems.append(f"part {name}: cannot be opened ({type(e).__name__}: {e})"[:300])
                continue
            try:
                index_counts = self.part_counts[k] if self.complete else None
                found = part_problems(part, name, self.meta, index_counts)
                problems += found
                if deep and not found:
                    problems += self._deep_problems(part, name, hashlib, _row_bytes)
            finally:
                part.close()
        return problems

    def _deep_problems(self, part: Any, name: str, hashlib: Any, row_bytes: Any) -> list[str]:
        problems = []
        sha = part.attrs.get("sha256") if isinstance(part.attrs.get("sha256"), Mapping) else {}
        for arr in self.specs:
            if arr not in sha and arr not in FEATURE_ARRAYS:
                continue
            try:
                data = np.asarray(part[arr][:])
            except StoreError as e:
                problems.append(str(e).removeprefix(f"{self.path}: "))
                continue
            if arr in sha:
                digest = hashlib.sha256(row_bytes(data) if len(data) else b"").hexdigest()
                if digest != sha[arr]:
                    problems.append(f"part {name}: array {arr}: checksum mismatch")
            if arr in FEATURE_ARRAYS:
                bad = int(data.size - np.count_nonzero(np.isfinite(data)))
                if bad:
                    problems.append(f"part {name}: array {arr}: {bad} non-finite value(s)")
        return problems

    def close(self) -> None:
        for part in self._parts.values():
            part.close()
        self._parts.clear()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _code_attrs(name: str, spaces: LabelSpaces) -> dict[str, Any]:
    """CF-style attributes telling what an integer code column's values mean."""
    codes = {
        "video_split": SPLIT_CODES,
        "video_task": TASK_CODES,
        "video_status": STATUS_CODES,
        "label_anomaly": ("normal", "abnormal"),
        "frame_labels": ("normal", "abnormal"),
    }
    if name in codes:
        values = codes[name]
        return {"flag_values": list(range(len(values))), "flag_meanings": " ".join(values)}
    lists = {"label_action": spaces.actions, "segment_label": spaces.actions}
    lists["label_group"] = spaces.groups
    for attr, values in spaces.all_attributes().items():
        lists[attribute_column(attr)] = values
    if name in lists:
        return {"labels": list(lists[name]), "unknown": -1}
    return {}


def open_store(path: str | Path, *, allow_incomplete: bool = False) -> FeatureStore:
    """Open a feature store for reading (zarr or HDF5, detected from its contents)."""
    p = Path(path)
    backend = detect_backend(p)
    return FeatureStore(p, backend, allow_incomplete=allow_incomplete)


__all__ = [
    "FEATURE_ARRAYS",
    "FeatureStore",
    "PartPlan",
    "PartWriter",
    "VideoRecord",
    "VideoView",
    "committed_parts",
    "create_store",
    "detect_backend",
    "frame_labels_for",
    "index_store",
    "label_codes",
    "new_store_attrs",
    "open_part_writer",
    "open_store",
    "plan_parts",
    "record_from_entry",
    "store_plan",
]
