"""The manifest contract: ``data_manifest.yaml`` and the video lists it references.

A manifest names the videos (inline, or in JSONL/CSV files beside it), their labels, the
label spaces and the clip sampling. ``load_manifest`` validates everything and raises a
one-line :class:`ManifestError` naming the file, the entry and the field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, show

SCHEMA = "aamflow.manifest/1"
CROP_COUNTS = (1, 10)  # sampling.crops: one view, or the I3D / UCF-Crime ten-crop
SPLITS = ("train", "val", "test")
TASKS = ("ar", "tad", "ad")

MAX_NAME_BYTES = 200  # ids, names, subsets, labels: a file name component (<id>_i3d.npy) fits 255
MAX_PATH_BYTES = 4096
# upper bounds of the sampling fields: beyond them a typo allocates gigabytes
SAMPLING_MAX = {
    "clip_len": 512,
    "frame_stride": 1024,
    "clip_stride": 100_000,
    "dense_stride": 100_000,
    "static_per_video": 1000,
    "input_size": 4096,
    "crops": 10,
}


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How clips are cut from videos (see README, "Clip sampling")."""

    clip_len: int = 16
    frame_stride: int = 1
    clip_stride: int = 16
    dense_stride: int = 4
    static_per_video: int = 10
    # the encoder's input side in pixels; None: whatever the encoder takes (extract records
    # it), a value that differs from the encoder's is refused (encoders have fixed sizes)
    input_size: int | None = None
    crops: int = 1  # spatial views per clip: 1 (the encoder's centre crop) or 10 (ten-crop)

    def to_dict(self) -> dict[str, int]:
        # crops is left out at its default, so a one-crop store's attributes are unchanged
        return {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if not (k == "crops" and self.crops == 1)
        }


@dataclass(frozen=True, kw_only=True)
class LabelSpaces:
    """Class lists; a label's integer code is its index in the list."""

    actions: tuple[str, ...] = ()
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    temporal_attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: tuple[str, ...] = ()

    def all_attributes(self) -> dict[str, tuple[str, ...]]:
        return {**self.attributes, **self.temporal_attributes}

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": list(self.actions),
            "attributes": {k: list(v) for k, v in self.attributes.items()},
            "temporal_attributes": {k: list(v) for k, v in self.temporal_attributes.items()},
            "groups": list(self.groups),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelSpaces:
        return cls(
            actions=tuple(d.get("actions", ())),
            attributes={k: tuple(v) for k, v in d.get("attributes", {}).items()},
            temporal_attributes={k: tuple(v) for k, v in d.get("temporal_attributes", {}).items()},
            groups=tuple(d.get("groups", ())),
        )


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A time interval in seconds, with a class name for TAD segments."""

    start: float
    end: float
    label: str | None = None


@dataclass(frozen=True, kw_only=True)
class VideoEntry:
    """One video and its labels."""

    id: str
    path: str
    split: str
    task: str = "ar"
    subset: str = "main"
    fps: float | None = None
    num_frames: int | None = None
    duration: float | None = None
    action: str | None = None
    segments: tuple[Segment, ...] = ()
    anomaly: int | None = None
    anomaly_segments: tuple[Segment, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    group: str | None = None

    def abspath(self, manifest: Manifest) -> Path:
        return manifest.root / self.path


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A validated manifest."""

    path: Path
    root: Path
    name: str
    sampling: Sampling
    label_spaces: LabelSpaces
    videos: tuple[VideoEntry, ...]
    digest: str

    def video_ids(self) -> list[str]:
        return [v.id for v in self.videos]


# ---------------------------------------------------------------- validation helpers


def _key(key: Any) -> str:
    """A mapping key as a field name in a message: short, printable."""
    if isinstance(key, str) and len(key) <= 60 and _bad_chars(key) is None:
        return key
    return show(key)


def _bad_chars(text: str) -> str | None:
    """A description of the first control or line-break character in ``text``, if any:
    such a character would split a line of a list file (``id\n/etc/passwd``)."""
    import unicodedata

    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"U+{ord(ch):04X}"
    return None


class _Where:
    """Formats error locations: ``file: entry 'id' (line N): field: problem``."""

    def __init__(self, file: Path, entry: str | None = None) -> None:
        self.file = file
        self.entry = entry

    def fail(self, fld: str, problem: str) -> ManifestError:
        at = f"{self.file}"
        if self.entry:
            at += f": {self.entry}"
        return ManifestError(f"{at}: field '{fld[:120]}': {problem[:500]}")


def _need_type(where: _Where, fld: str, value: Any, types: tuple[type, ...], what: str) -> Any:
    # bool is an int subclass; a YAML `yes` must not pass as a number
    if isinstance(value, bool) and bool not in types:
        raise where.fail(fld, f"expected {what}, got {show(value)}")
    if not isinstance(value, types):
        raise where.fail(fld, f"expected {what}, got {type(value).__name__} {show(value)}")
    return value


def _name(where: _Where, fld: str, value: Any, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A bounded, printable string field (id, name, subset, label)."""
    text = str(value)
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise where.fail(fld, f"{show(text)} is longer than {max_bytes} bytes")
    bad = _bad_chars(text)
    if bad:
        raise where.fail(fld, f"{show(text)} contains the control character {bad}")
    return text


def _str_list(where: _Where, fld: str, value: Any) -> tuple[str, ...]:
    _need_type(where, fld, value, (list,), "a list of names")
    out = []
    for item in value:
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise where.fail(fld, f"expected names, got {show(item)}")
        out.append(_name(where, fld, item))
    if len(set(out)) != len(out):
        raise where.fail(fld, "names must be unique")
    return tuple(out)


def _parse_sampling(where: _Where, raw: Any) -> Sampling:
    if raw is None:
        return Sampling()
    _need_type(where, "sampling", raw, (dict,), "a mapping")
    known = set(Sampling.__dataclass_fields__)
    values: dict[str, int] = {}
    for key, val in raw.items():
        if key not in known:
            raise where.fail(f"sampling.{key}", f"unknown field; valid: {', '.join(sorted(known))}")
        _need_type(where, f"sampling.{key}", val, (int,), "a positive integer")
        if not 0 < val <= SAMPLING_MAX[key]:
            raise where.fail(
                f"sampling.{key}", f"must be in [1, {SAMPLING_MAX[key]}], got {show(val)}"
            )
        if key == "crops" and val not in CROP_COUNTS:
            raise where.fail(
                "sampling.crops",
                f"must be 1 or 10 (ten-crop: 4 corners + centre and their mirror images), got {val}",
            )
        values[key] = val
    return Sampling(**values)


def _parse_label_spaces(where: _Where, raw: Any) -> LabelSpaces:
    if raw is None:
        return LabelSpaces()
    _need_type(where, "label_spaces", raw, (dict,), "a mapping")
    known = {"actions", "attributes", "temporal_attributes", "groups"}
    for key in raw:
        if key not in known:
            raise where.fail(
                f"label_spaces.{_key(key)}", f"unknown field; valid: {', '.join(sorted(known))}"
            )
    spaces: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind in ("attributes", "temporal_attributes"):
        block = raw.get(kind) or {}
        _need_type(where, f"label_spaces.{kind}", block, (dict,), "a mapping of name -> values")
        spaces[kind] = {
            _name(where, f"label_spaces.{kind}", k): _str_list(
                where, f"label_spaces.{kind}.{_key(k)}", v
            )
            for k, v in block.items()
        }
    clash = set(spaces["attributes"]) & set(spaces["temporal_attributes"])
    if clash:
        raise where.fail("label_spaces", f"attribute declared twice: {sorted(clash)}")
    return LabelSpaces(
        actions=_str_list(where, "label_spaces.actions", raw.get("actions") or []),
        attributes=spaces["attributes"],
        temporal_attributes=spaces["temporal_attributes"],
        groups=_str_list(where, "label_spaces.groups", raw.get("groups") or []),
    )


def _number(where: _Where, fld: str, value: Any, *, positive: bool = False) -> float:
    _need_type(where, fld, value, (int, float), "a number")
    try:
        as_float = float(value)
    except OverflowError:  # an integer beyond float range
        raise where.fail(fld, f"{show(value)} is out of range") from None
    if not math.isfinite(as_float) or (positive and as_float <= 0) or as_float < 0:
        raise where.fail(
            fld, f"must be a {'positive' if positive else 'non-negative'} number, got {show(value)}"
        )
    return as_float


def _parse_segments(
    where: _Where, fld: str, raw: Any, duration: float | None, labels: tuple[str, ...] | None
) -> tuple[Segment, ...]:
    if raw is None:
        return ()
    _need_type(where, fld, raw, (list,), "a list of {start, end} mappings")
    out = []
    for i, seg in enumerate(raw):
        f = f"{fld}[{i}]"
        _need_type(where, f, seg, (dict,), "a mapping with start and end")
        for key in seg:
            if key not in ("start", "end", "label"):
                raise where.fail(f"{f}.{_key(key)}", "unknown field; valid: end, label, start")
        if "start" not in seg or "end" not in seg:
            raise where.fail(f, "needs both 'start' and 'end' (seconds)")
        start = _number(where, f"{f}.start", seg["start"])
        end = _number(where, f"{f}.end", seg["end"])
        if end <= start:
            raise where.fail(f, f"end {end} must be after start {start}")
        if duration is not None and end > duration + 1e-6:
            raise where.fail(
                f, f"segment [{start}, {end}] lies outside [0, {duration}] (video duration)"
            )
        label = seg.get("label")
        if labels is not None:
            if label is None:
                raise where.fail(f"{f}.label", "a TAD segment needs a label")
            if str(label) not in labels:
                raise where.fail(
                    f"{f}.label", f"unknown action {show(label)}; valid: {', '.join(labels)}"
                )
        label = None if label is None else _name(where, f"{f}.label", label)
        out.append(Segment(start=start, end=end, label=label))
    return tuple(out)


_VIDEO_FIELDS = {
    "id",
    "path",
    "split",
    "task",
    "subset",
    "fps",
    "num_frames",
    "duration",
    "action",
    "segments",
    "anomaly",
    "anomaly_segments",
    "attributes",
    "group",
}


def _safe_relpath(where: _Where, root: Path, path: str) -> str:
    """Refuse absolute paths, ``..`` and symlinks that lead outside the root."""
    if "\x00" in path:
        raise where.fail("path", f"{show(path)} contains a NUL character")
    _name(where, "path", path, MAX_PATH_BYTES)
    p = Path(path)
    if p.is_absolute() or path.startswith(("/", "\\")) or (os.name == "nt" and p.drive):
        raise where.fail(
            "path", f"{show(path)} is absolute; paths must be relative to the root {root}"
        )
    if ".." in p.parts:
        raise where.fail("path", f"{show(path)} escapes the root {root}")
    try:
        resolved = (root / p).resolve()
        resolved.relative_to(root.resolve())
    except ValueError:
        raise where.fail(
            "path", f"{show(path)} resolves outside the root {root} (symlink?)"
        ) from None
    except OSError as e:  # a symlink loop, a name too long for the file system
        raise where.fail("path", f"{show(path)} cannot be resolved ({e.strerror})") from None
    return p.as_posix()


def _parse_video(where: _Where, raw: Any, root: Path, spaces: LabelSpaces) -> VideoEntry:
    _need_type(where, "video", raw, (dict,), "a mapping")
    for key in raw:
        if key not in _VIDEO_FIELDS:
            raise where.fail(_key(key), f"unknown field; valid: {', '.join(sorted(_VIDEO_FIELDS))}")
    for key in ("id", "path", "split"):
        if key not in raw or raw[key] is None or (isinstance(raw[key], str) and not raw[key]):
            raise where.fail(key, "is required")
    vid = _name(where, "id", _need_type(where, "id", raw["id"], (str, int), "a string"))
    path = _safe_relpath(
        where, root, str(_need_type(where, "path", raw["path"], (str,), "a string"))
    )
    split = raw["split"]
    if not isinstance(split, str) or split not in SPLITS:
        raise where.fail("split", f"{show(split)} is not one of {', '.join(SPLITS)}")
    task = raw.get("task", "ar")
    if not isinstance(task, str) or task not in TASKS:
        raise where.fail("task", f"{show(task)} is not one of {', '.join(TASKS)}")
    subset = _name(
        where, "subset", _need_type(where, "subset", raw.get("subset", "main"), (str,), "a string")
    )
    fps = None if raw.get("fps") is None else _number(where, "fps", raw["fps"], positive=True)
    num_frames = raw.get("num_frames")
    if num_frames is not None:
        _need_type(where, "num_frames", num_frames, (int,), "an integer")
        if not 0 < num_frames < 2**40:
            raise where.fail("num_frames", f"must be in [1, 2**40), got {show(num_frames)}")
    duration = raw.get("duration")
    if duration is not None:
        duration = _number(where, "duration", duration, positive=True)
    elif fps is not None and num_frames is not None:
        duration = num_frames / fps
    action = raw.get("action")
    if action is not None:
        action = str(action)
        if action not in spaces.actions:
            raise where.fail(
                "action",
                f"unknown action {show(action)}; valid: "
                f"{', '.join(spaces.actions) or '(none declared)'}",
            )
    segments = _parse_segments(where, "segments", raw.get("segments"), duration, spaces.actions)
    anomaly = raw.get("anomaly")
    if anomaly is not None and (
        isinstance(anomaly, bool) or not isinstance(anomaly, int) or anomaly not in (0, 1)
    ):
        raise where.fail("anomaly", f"must be 0 or 1, got {show(anomaly)}")
    anomaly_segments = _parse_segments(
        where, "anomaly_segments", raw.get("anomaly_segments"), duration, None
    )
    if anomaly_segments and anomaly == 0:
        raise where.fail(
            "anomaly_segments", "a normal video (anomaly: 0) cannot have anomaly segments"
        )
    attributes_raw = raw.get("attributes") or {}
    _need_type(where, "attributes", attributes_raw, (dict,), "a mapping of attribute -> value")
    attributes: dict[str, str] = {}
    declared = spaces.all_attributes()
    for name, value in attributes_raw.items():
        if not isinstance(name, str) or name not in declared:
            raise where.fail(
                f"attributes.{_key(name)}",
                f"unknown attribute; valid: {', '.join(declared) or '(none declared)'}",
            )
        if isinstance(value, (dict, list)) or str(value) not in declared[name]:
            raise where.fail(
                f"attributes.{name}",
                f"unknown value {show(value)}; valid: {', '.join(declared[name])}",
            )
        attributes[str(name)] = str(value)
    group = raw.get("group")
    if group is not None:
        group = str(group) if not isinstance(group, (dict, list)) else show(group)
        if group not in spaces.groups:
            raise where.fail(
                "group",
                f"unknown group {show(group)}; valid: "
                f"{', '.join(spaces.groups) or '(none declared)'}",
            )
    return VideoEntry(
        id=vid,
        path=path,
        split=split,
        task=task,
        subset=subset,
        fps=fps,
        num_frames=num_frames,
        duration=duration,
        action=action,
        segments=segments,
        anomaly=anomaly,
        anomaly_segments=anomaly_segments,
        attributes=attributes,
        group=group,
    )


def _read_list(file: Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, raw entry) from a JSONL or CSV video list."""
    if not file.is_file():
        raise ManifestError(f"{file}: video list not found")
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with file.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                line = _utf8(file, lineno, raw)
                if not line.strip():
                    continue
                yield f"line {lineno}", _json(file, f"line {lineno}", line)
    elif suffix == ".csv":
        # CSV cells are strings; JSON-typed columns (segments, attributes) hold JSON text
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            lineno = data.count(b"\n", 0, e.start) + 1
            raise ManifestError(f"{file}: line {lineno}: not valid UTF-8 text") from None
        import io

        try:
            for lineno, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), 2):
                yield f"line {lineno}", _coerce_csv_row(file, lineno, row)
        except csv.Error as e:
            raise ManifestError(f"{file}: invalid CSV ({e})") from None
    else:
        raise ManifestError(
            f"{file}: video list must be .jsonl or .csv, got {suffix or 'no suffix'!r}"
        )


def _utf8(file: Path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{file}: line {lineno}: not valid UTF-8 text") from None


def _json(file: Path, where: str, text: str) -> Any:
    """``json.loads`` whose every failure (bad syntax, an integer of more than 4300 digits,
    nesting deeper than the parser's recursion limit) is one ManifestError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{file}: {where}: invalid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
        raise ManifestError(f"{file}: {where}: invalid JSON: {detail}") from None


def _coerce_csv_row(file: Path, lineno: int, row: dict[str | None, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, cell in row.items():
        if key is None:  # more cells than header columns
            raise ManifestError(f"{file}: line {lineno}: more cells than the header has columns")
        if cell is None or cell == "":
            continue
        where = f"line {lineno}: field '{_key(key)}'"
        if key in ("segments", "anomaly_segments", "attributes"):
            try:
                out[key] = _json(file, where, cell)
            except ManifestError:
                raise ManifestError(f"{file}: {where}: expected JSON text") from None
        elif key in ("num_frames", "anomaly"):
            try:
                out[key] = int(cell)
            except ValueError:
                raise ManifestError(
                    f"{file}: {where}: expected an integer, got {show(cell)}"
                ) from None
        elif key in ("fps", "duration"):
            try:
                out[key] = float(cell)
            except ValueError:
                raise ManifestError(
                    f"{file}: {where}: expected a number, got {show(cell)}"
                ) from None
        else:
            out[key] = cell
    return out


MAX_ALIAS_NODES = 100_000  # YAML nodes that aliases may add to a manifest, all together


def _yaml_loader() -> type:
    """A safe YAML loader with bounded aliases. PyYAML writes an alias wherever a script
    reuses one object (a shared ``attributes`` dict), so aliases are accepted; but nested
    aliases expand exponentially (a few hundred bytes become 10**10 nodes, a "billion
    laughs"), so the nodes they add are counted and capped, and a recursive one is refused."""
    import yaml

    def size(node: Any, memo: dict[int, int], active: set[int]) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise ValueError("recursive alias")
        active.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(size(child, memo, active) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n += sum(size(k, memo, active) + size(v, memo, active) for k, v in node.value)
        active.discard(key)
        memo[key] = n
        return n

    class BoundedAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if not self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)
            event = self.peek_event()
            node = super().compose_node(parent, index)
            memo = self.__dict__.setdefault("_alias_memo", {})
            added = size(node, memo, set())  # a cycle shows only once the anchor is complete
            self._alias_nodes = getattr(self, "_alias_nodes", 0) + added
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases (*{event.anchor}) expand to more than {MAX_ALIAS_NODES:,} "
                    "nodes; write the values out",
                    event.start_mark,
                )
            return node

        def compose_document(self) -> Any:
            root = super().compose_document()
            if getattr(self, "_alias_nodes", 0):  # an alias inside its own anchor: a cycle
                try:
                    size(root, {}, set())
                except ValueError:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        "an alias refers to itself (a recursive value); write the values out",
                        None,
                    ) from None
            return root

    return BoundedAliasLoader


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Load and validate a manifest.

    Parameters
    ----------
    path
        The ``data_manifest.yaml`` file.

    Raises
    ------
    ManifestError
        One line naming the file, the entry (id or line) and the field.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ManifestError(f"{file}: manifest not found")
    h = hashlib.sha256()
    text = file.read_bytes()
    h.update(text)
    try:
        raw = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())[:200]
        raise ManifestError(f"{file}{line}: invalid YAML: {problem}") from None
    except (ValueError, RecursionError) as e:  # a huge integer, nesting too deep
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:120]
        raise ManifestError(f"{file}: invalid YAML: {detail}") from None
    top = _Where(file)
    if not isinstance(raw, dict):
        raise ManifestError(f"{file}: expected a YAML mapping at the top level")
    known = {"schema", "name", "root", "sampling", "label_spaces", "videos", "video_lists"}
    for key in raw:
        if key not in known:
            raise top.fail(_key(key), f"unknown field; valid: {', '.join(sorted(known))}")
    schema = raw.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise top.fail("schema", f"unsupported schema {show(schema)}; expected {SCHEMA!r}")
    root_raw = raw.get("root", ".")
    _need_type(top, "root", root_raw, (str,), "a folder path")
    if "\x00" in root_raw:
        raise top.fail("root", f"{show(root_raw)} contains a NUL character")
    _name(top, "root", root_raw, MAX_PATH_BYTES)
    root = (file.parent / root_raw).resolve()
    sampling = _parse_sampling(top, raw.get("sampling"))
    spaces = _parse_label_spaces(top, raw.get("label_spaces"))

    sources: list[tuple[Path, str, Any]] = []
    inline = raw.get("videos") or []
    _need_type(top, "videos", inline, (list,), "a list of videos")
    for i, entry in enumerate(inline):
        sources.append((file, f"videos[{i}]", entry))
    lists = raw.get("video_lists") or []
    if isinstance(lists, str):
        lists = [lists]
    _need_type(top, "video_lists", lists, (list,), "a list of JSONL/CSV files")
    for name in lists:
        if not isinstance(name, str) or "\x00" in name:
            raise top.fail("video_lists", f"{show(name)} is not a file name")
        _name(top, "video_lists", name, MAX_PATH_BYTES)
        list_file = file.parent / name
        h.update(list_file.name.encode())
        if list_file.is_file():
            h.update(list_file.read_bytes())
        for loc, entry in _read_list(list_file):
            sources.append((list_file, loc, entry))
    if not sources:
        raise top.fail("videos", "the manifest lists no videos")

    videos: list[VideoEntry] = []
    seen: dict[str, str] = {}
    for src, loc, entry in sources:
        label = loc
        if isinstance(entry, dict) and "id" in entry:
            label = f"{loc} (id {show(entry['id'])})"
        video = _parse_video(_Where(src, label), entry, root, spaces)
        if video.id in seen:
            raise _Where(src, label).fail(
                "id", f"duplicate id {show(video.id)} (first at {seen[video.id]})"
            )
        seen[video.id] = f"{src.name} {loc}"
        videos.append(video)
    name = _name(top, "name", raw.get("name") or file.parent.name)
    return Manifest(
        path=file,
        root=root,
        name=name,
        sampling=sampling,
        label_spaces=spaces,
        videos=tuple(videos),
        digest="sha256:" + h.hexdigest(),
    )


@dataclass(frozen=True, kw_only=True)
class DuplicateVideos:
    """Manifest entries that name one video: the same file, or files of identical content."""

    how: str  # "path" (the same file) or "content" (identical bytes)
    videos: tuple[VideoEntry, ...]

    @property
    def splits(self) -> list[str]:
        return sorted({v.split for v in self.videos})

    def describe(self) -> str:
        ids = ", ".join(f"{show(v.id)} ({v.split})" for v in self.videos[:4])
        more = f" and {len(self.videos) - 4} more" if len(self.videos) > 4 else ""
        what = "the same file" if self.how == "path" else "files of identical content"
        return f"ids {ids}{more} name {what} ({show(self.videos[0].path)})"


def duplicate_videos(manifest: Manifest, *, content: bool = True) -> list[DuplicateVideos]:
    """Groups of entries that name one video under several ids.

    Paths are compared resolved (``a.mp4``, ``./a.mp4`` and a symlink to it are one file);
    with ``content``, existing files of equal size are also compared by sha256, which
    costs one ``stat`` per video and reading only the files whose sizes collide.
    """
    import hashlib

    by_path: dict[str, list[VideoEntry]] = {}
    for v in manifest.videos:
        try:
            key = str(v.abspath(manifest).resolve())
        except OSError:
            key = str(v.abspath(manifest))
        by_path.setdefault(key, []).append(v)
    groups = [DuplicateVideos(how="path", videos=tuple(g)) for g in by_path.values() if len(g) > 1]
    if not content:
        return groups
    by_size: dict[int, list[str]] = {}
    for key in by_path:
        try:
            st = os.stat(key)
        except OSError:
            continue  # a missing video is recorded as failed by extract, not compared
        if st.st_size:
            by_size.setdefault(st.st_size, []).append(key)
    for keys in by_size.values():
        if len(keys) < 2:
            continue
        by_digest: dict[str, list[VideoEntry]] = {}
        for key in keys:
            h = hashlib.sha256()
            try:
                with open(key, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(block)
            except OSError:
                continue
            by_digest.setdefault(h.hexdigest(), []).extend(by_path[key])
        groups += [
            DuplicateVideos(how="content", videos=tuple(g))
            for g in by_digest.values()
            if len({str(v.abspath(manifest).resolve()) for v in g}) > 1
        ]
    return groups
