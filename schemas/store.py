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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .backends._base import BACKENDS, Backend
from .errors import StoreError
from .layout import (
    FEATURE_ARRAYS,
    SPLIT_CODES,
    STATUS_CODES,
    STORE_SCHEMA,
    STORE_VERSION,
    TASK_CODES,
    attribute_column,
    numpy_dtype,
    part_arrays,
    part_name,
    tail_shape,
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


def new_store_attrs(
    *,
    encoder: dict[str, Any],
    sampling: Sampling | dict[str, Any],
    label_spaces: LabelSpaces,
    plan: Sequence[PartPlan],
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Root attributes for a new store (``{"aamflow": {...}}``)."""
    prov = {
        "store_uuid": str(uuid.uuid4()),
        "tool": TOOL_NAME,
        "tool_version": tool_version(),
        "created_utc": utcnow(),
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
            "index": None,
        }
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
        if not exist_ok:
            raise StoreError(f"{p}: already exists (use --overwrite to replace it)")
        existing = detect_backend(p)
        old = existing.read_attrs(p)["aamflow"]
        new = attrs["aamflow"]
        for key in ("encoder", "sampling", "label_spaces", "plan"):
            if old.get(key) != new.get(key):
                raise StoreError(
                    f"{p}: exists with a different {key}; use --overwrite or another --out"
                )
        return existing
    backend.create(p, attrs)
    return backend


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
        spaces = LabelSpaces.from_dict(meta["label_spaces"])
        self.specs = part_arrays(list(spaces.all_attributes()))
        self.dim = int(meta["feature_dim"])
        self.clip_len = int(meta["clip_len"])
        tails = {k: tail_shape(s, self.dim, self.clip_len) for k, s in self.specs.items()}
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


def open_part_writer(path: str | Path, plan: PartPlan) -> PartWriter:
    """A writer for one planned part of an existing store."""
    p = Path(path)
    backend = detect_backend(p)
    return PartWriter(p, backend, backend.read_attrs(p), plan)


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


def index_store(path: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record every planned part's counts in the root attributes; the store is then complete.

    Raises StoreError naming the parts still missing.
    """
    p = Path(path)
    backend = detect_backend(p)
    attrs = backend.read_attrs(p)
    meta = attrs["aamflow"]
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
        part = backend.open_part(p, name)
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
        self.attrs = backend.read_attrs(path)
        self.meta: dict[str, Any] = self.attrs["aamflow"]
        if self.meta.get("schema") != STORE_SCHEMA:
            raise StoreError(f"{path}: schema {self.meta.get('schema')!r} is not {STORE_SCHEMA}")
        if self.meta.get("version", 0) > STORE_VERSION:
            raise StoreError(
                f"{path}: store version {self.meta['version']} is newer than this aamflow"
            )
        index = self.meta.get("index")
        if index is None and not allow_incomplete:
            done = len(backend.committed_parts(path))
            raise StoreError(
                f"{path}: store is not indexed ({done}/{len(self.meta['plan'])} parts committed); "
                "finish or resume the run that writes it"
            )
        if index is not None:
            self.part_names = [d["name"] for d in index["parts"]]
            self.part_counts = [d["counts"] for d in index["parts"]]
        else:
            committed = set(backend.committed_parts(path))
            self.part_names = [d["name"] for d in self.meta["plan"] if d["name"] in committed]
            self.part_counts = []
            for name in self.part_names:
                self.part_counts.append(self._part(name).attrs["counts"])
        self._parts: dict[str, Any] = {}

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

    def _part(self, name: str) -> Any:
        if name not in self._parts:
            try:
                part = self.backend.open_part(self.path, name)
            except (OSError, FileNotFoundError, KeyError) as e:
                raise StoreError(f"{self.path}: part {name} cannot be opened: {e}") from None
            # a deleted chunk would read back as fill values: refuse instead of serving them
            for arr in ("clip_features", "static_features", "clip_video", "static_video"):
                if part.missing_chunks(arr):
                    part.close()
                    raise StoreError(
                        f"{self.path}: part {name}, array {arr}: chunk(s) missing; "
                        f"the part is damaged (aamflow inspect {self.path} lists problems)"
                    )
            self._parts[name] = part
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
        """One array over all parts as a lazy ``dask.array``."""
        import dask.array as da

        return da.concatenate([self._part(p).dask(name) for p in self.part_names], axis=0)

    def clip_features(self) -> Any:
        return self.dask("clip_features")

    def static_features(self) -> Any:
        return self.dask("static_features")

    @cached_property
    def videos(self) -> Any:
        """The videos table (pandas), one row per video, with global clip/static offsets."""
        import pandas as pd

        cols = (
            [
                n
                for n in self._part(self.part_names[0]).names()
                if n.startswith(("video_", "label_"))
            ]
            if self.part_names
            else []
        )
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

    def video(self, row: int) -> VideoView:
        """Features and labels of the video at global row ``row``."""
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
            error=str(v["error"]),
            num_frames=int(v["num_frames"]),
            fps=float(v["fps"]),
            clip_features=np.asarray(part["clip_features"][cs : cs + cn]),
            clip_frames=np.asarray(part["clip_frames"][cs : cs + cn]),
            clip_time=np.asarray(part["clip_time"][cs : cs + cn]),
            static_features=np.asarray(part["static_features"][ss : ss + sn]),
            static_frame=np.asarray(part["static_frame"][ss : ss + sn]),
            segments=np.column_stack([seg_l, seg_t]) if gn else np.zeros((0, 3)),
            frame_labels=np.asarray(part["frame_labels"][fs : fs + fn])
            if fn
            else np.zeros(0, np.int8),
            labels={c: int(v[c]) for c in v.index if c.startswith("label_")},
        )

    def iter_videos(self) -> Iterator[VideoView]:
        for row in self.videos["row"]:
            yield self.video(int(row))

    def validate(self, deep: bool = False) -> list[str]:
        """Problems found (empty when healthy): missing parts or chunks, count mismatches,
        and with ``deep`` a sha256 check of every array against its commit record."""
        import hashlib

        from .backends.zarr_ import _row_bytes

        problems = []
        committed = set(self.backend.committed_parts(self.path))
        for name, counts in zip(self.part_names, self.part_counts, strict=True):
            if name not in committed:
                problems.append(f"part {name}: missing")
                continue
            try:  # opened raw: _part refuses damaged parts, validation reports them
                part = self.backend.open_part(self.path, name)
            except Exception as e:
                problems.append(f"part {name}: cannot be opened ({e})")
                continue
            rows = part.attrs.get("rows", {})
            for arr in part.names():
                try:
                    n = part[arr].shape[0]
                except Exception as e:
                    problems.append(f"part {name}: array {arr}: unreadable ({e})")
                    continue
                if arr in rows and rows[arr] != n:
                    problems.append(
                        f"part {name}: array {arr}: {n} rows, commit recorded {rows[arr]}"
                    )
                missing = part.missing_chunks(arr)
                if missing:
                    problems.append(f"part {name}: array {arr}: {missing} chunk(s) missing")
                if deep and arr in part.attrs.get("sha256", {}):
                    try:
                        data = np.asarray(part[arr][:])
                    except Exception as e:
                        problems.append(f"part {name}: array {arr}: unreadable ({e})")
                        continue
                    digest = hashlib.sha256(_row_bytes(data) if len(data) else b"").hexdigest()
                    if digest != part.attrs["sha256"][arr]:
                        problems.append(f"part {name}: array {arr}: checksum mismatch")
            for table, arr in (("clips", "clip_features"), ("static", "static_features")):
                if arr in rows and rows[arr] != counts[table]:
                    problems.append(
                        f"part {name}: {table}: {rows[arr]} rows, index says {counts[table]}"
                    )
        return problems

    def close(self) -> None:
        for part in self._parts.values():
            part.close()
        self._parts.clear()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


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
