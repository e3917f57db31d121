"""Zarr v3 backend: a directory store; each part is a zarr group under ``parts/``.

Physical layout::

    features.zarr/
      zarr.json                 root group; attributes["aamflow"] = store metadata
      parts/zarr.json           group holding committed parts
      parts/part-00000/         one part: a zarr group of 1-D/2-D arrays with dimension names
      parts/.tmp-part-00000-*   staging (no zarr.json at parts level: invisible to zarr)

A part is built in staging and committed by one ``os.rename``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..layout import STR, ArraySpec
from ._base import BACKENDS, CheckedArray, chunk_rows

ROOT_META = "zarr.json"


def _codecs() -> dict[str, Any]:
    from zarr.codecs import ZstdCodec

    # zstd's frame checksum turns a corrupted chunk into a read error instead of garbage
    return {"compressors": [ZstdCodec(level=3, checksum=True)]}


class _ZarrPartWriter:
    """Buffers rows and writes whole chunks, so no chunk is ever rewritten."""

    def __init__(
        self,
        root: Path,
        name: str,
        specs: dict[str, ArraySpec],
        tails: dict[str, tuple[int, ...]],
        rows_hint: dict[str, int],
    ) -> None:
        import zarr

        self.final = root / "parts" / name
        self.staging = root / "parts" / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        self.group = zarr.open_group(str(self.staging), mode="w", zarr_format=3)
        self.arrays: dict[str, Any] = {}
        self.buffers: dict[str, list[np.ndarray]] = {}
        self.buffered: dict[str, int] = {}
        self.hashes: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self.chunk: dict[str, int] = {}
        self.specs = specs
        self.tails = tails
        for name_, spec in specs.items():
            self.buffers[name_] = []
            self.buffered[name_] = 0
            self.hashes[name_] = hashlib.sha256()
            self.rows[name_] = 0
            self.chunk[name_] = chunk_rows(spec, tails[name_], hint=rows_hint.get(name_))

    def _create(self, name: str, data: np.ndarray | None) -> Any:
        # arrays are created on first flush; most are written in one call at commit
        spec, tail = self.specs[name], self.tails[name]
        kwargs = {} if spec.dtype == STR else _codecs()
        if data is None:
            data = np.zeros((0, *tail), dtype=object if spec.dtype == STR else spec.dtype)
        if spec.dtype == STR:
            data = (
                np.asarray([str(x) for x in data.tolist()], dtype=str)
                if len(data)
                else np.zeros(0, dtype=str)
            )
        arr = self.group.create_array(
            name,
            shape=data.shape,
            chunks=(self.chunk[name], *tail),
            dtype=str if spec.dtype == STR else spec.dtype,
            fill_value=spec.fill,
            dimension_names=list(spec.dims),
            # a chunk equal to the fill value must still exist, or a deleted chunk and
            # an all-empty chunk look the same to validation
            config={"write_empty_chunks": True},
            **kwargs,
        )
        if len(data):
            arr[...] = data
        self.arrays[name] = arr
        return arr

    def append(self, name: str, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self.hashes[name].update(_row_bytes(rows))
        self.buffers[name].append(rows)
        self.buffered[name] += len(rows)
        self.rows[name] += len(rows)
        if self.buffered[name] >= self.chunk[name]:
            self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        if not self.buffers[name]:
            return
        data = np.concatenate(self.buffers[name])
        step = self.chunk[name]
        cut = len(data) if final else (len(data) // step) * step
        if cut:
            if name not in self.arrays:
                self._create(name, data[:cut])
            else:
                self.arrays[name].append(data[:cut], axis=0)
        rest = data[cut:]
        self.buffers[name] = [rest] if len(rest) else []
        self.buffered[name] = len(rest)

    def commit(self, attrs: dict[str, Any]) -> None:
        for name in self.specs:
            self._flush(name, final=True)
            if name not in self.arrays:
                self._create(name, None)
        attrs = dict(attrs)
        attrs["rows"] = dict(self.rows)
        attrs["sha256"] = {k: h.hexdigest() for k, h in self.hashes.items()}
        self.group.attrs.update({"aamflow_part": attrs})
        trash = None
        if self.final.exists():  # an older committed copy (--overwrite): moved aside first,
            # so the final name never holds half a part
            trash = self.final.with_name(f".del-{self.final.name}-{uuid.uuid4().hex[:8]}")
            self.final.rename(trash)
        self.staging.rename(self.final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _row_bytes(rows: np.ndarray) -> bytes:
    if rows.dtype.kind in ("O", "U", "T"):
        # NUL-terminated per row, so the digest does not depend on how rows were batched
        return "".join(f"{x}\x00" for x in rows.tolist()).encode()
    return np.ascontiguousarray(rows).tobytes()


class _ZarrPart:
    def __init__(self, path: Path) -> None:
        import zarr

        self.path = path
        self.group = zarr.open_group(str(path), mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs).get("aamflow_part", {})

    def __getitem__(self, name: str) -> CheckedArray:
        store = self.path.parent.parent
        return CheckedArray(self.group[name], f"{store}: part {self.path.name}, array {name}")

    def names(self) -> list[str]:
        return sorted(self.group.array_keys())

    def dask(self, name: str) -> Any:
        return self[name].dask()

    def missing_chunks(self, name: str) -> int:
        arr = self.group[name]
        return int(arr.nchunks) - int(arr.nchunks_initialized)

    def close(self) -> None:
        pass


@BACKENDS.register("zarr")
class ZarrBackend:
    """Zarr v3 on a local directory."""

    name = "zarr"
    suffixes = (".zarr",)

    def is_store(self, path: Path) -> bool:
        meta = path / ROOT_META
        if not meta.is_file():
            return False
        try:
            return "aamflow" in json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError):
            return False

    def create(self, path: Path, attrs: dict[str, Any]) -> None:
        import zarr

        # built under a temporary name and renamed: a crash never leaves a half store
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        zarr.open_group(str(tmp), mode="w", zarr_format=3)
        zarr.open_group(str(tmp / "parts"), mode="w", zarr_format=3)
        self.write_attrs(tmp, attrs)
        try:
            tmp.rename(path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _root_meta(self, path: Path) -> dict[str, Any]:
        from ..errors import StoreError

        try:
            meta = json.loads((path / ROOT_META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{path}: no {ROOT_META}; not a zarr store") from None
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            detail = getattr(e, "msg", type(e).__name__)
            raise StoreError(
                f"{path / ROOT_META}: damaged ({detail}); the store's root metadata cannot be read"
            ) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("attributes", {}), dict):
            raise StoreError(f"{path / ROOT_META}: damaged (not a zarr group's metadata)")
        return meta

    def read_attrs(self, path: Path) -> dict[str, Any]:
        return self._root_meta(path).get("attributes", {})

    def write_attrs(self, path: Path, attrs: dict[str, Any]) -> None:
        # zarr writes zarr.json in place; we rename a complete file over it instead
        meta = self._root_meta(path)
        meta["attributes"] = attrs
        atomic_write_bytes(path / ROOT_META, json.dumps(meta, indent=2).encode())

    def committed_parts(self, path: Path) -> list[str]:
        parts = path / "parts"
        if not parts.is_dir():
            return []
        return sorted(
            p.name
            for p in parts.iterdir()
            if not p.name.startswith(".") and (p / ROOT_META).is_file()
        )

    def part_writer(
        self,
        path: Path,
        name: str,
        specs: dict[str, ArraySpec],
        tails: dict[str, tuple[int, ...]],
        rows_hint: dict[str, int] | None = None,
    ) -> _ZarrPartWriter:
        return _ZarrPartWriter(path, name, specs, tails, rows_hint or {})

    def open_part(self, path: Path, name: str) -> _ZarrPart:
        return _ZarrPart(path / "parts" / name)

    def finalize(self, path: Path, parts: list[str]) -> None:
        pass
