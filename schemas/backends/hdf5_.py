"""HDF5 backend: one root file plus one HDF5 file per part.

Physical layout::

    features.h5                  root file; attrs["aamflow"] = store metadata (JSON text);
                                 after indexing, /parts/part-00000 ... are external links
    features.h5.parts/part-00000.h5     one part: datasets named as in the zarr layout
    features.h5.parts/.tmp-part-*.h5    staging

Each part file is written under a temporary name and committed by ``os.replace``; the root
file is likewise rewritten whole and renamed, never edited in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import temp_name
from ..layout import STR, ArraySpec
from ._base import BACKENDS, CheckedArray, chunk_rows
from .zarr_ import _row_bytes


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _h5_dtype(spec: ArraySpec) -> Any:
    import h5py

    return h5py.string_dtype("utf-8") if spec.dtype == STR else np.dtype(spec.dtype)


class _H5PartWriter:
    def __init__(
        self,
        root: Path,
        name: str,
        specs: dict[str, ArraySpec],
        tails: dict[str, tuple[int, ...]],
        rows_hint: dict[str, int],
    ) -> None:
        import h5py

        parts = _parts_dir(root)
        parts.mkdir(exist_ok=True)
        self.final = parts / f"{name}.h5"
        self.staging = parts / f".tmp-{name}-{uuid.uuid4().hex[:8]}.h5"
        self.file = h5py.File(self.staging, "w", track_order=True)
        self.hashes = {k: hashlib.sha256() for k in specs}
        self.rows = dict.fromkeys(specs, 0)
        for key, spec in specs.items():
            tail = tails[key]
            ds = self.file.create_dataset(
                key,
                shape=(0, *tail),
                maxshape=(None, *tail),
                chunks=(
                    chunk_rows(spec, tail, target_bytes=1 << 20, hint=rows_hint.get(key)),
                    *tail,
                ),
                dtype=_h5_dtype(spec),
                compression="gzip" if spec.dtype != STR else None,
                compression_opts=1 if spec.dtype != STR else None,
                fletcher32=spec.dtype != STR,  # a corrupted chunk fails to read
            )
            for axis, dim in enumerate(spec.dims):
                ds.dims[axis].label = dim

    def append(self, name: str, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self.hashes[name].update(_row_bytes(rows))
        ds = self.file[name]
        n = ds.shape[0]
        ds.resize(n + len(rows), axis=0)
        if rows.dtype.kind in ("O", "U", "T"):
            rows = np.asarray([str(x) for x in rows.tolist()], dtype=object)
        ds[n : n + len(rows)] = rows
        self.rows[name] += len(rows)

    def commit(self, attrs: dict[str, Any]) -> None:
        attrs = dict(attrs)
        attrs["rows"] = dict(self.rows)
        attrs["sha256"] = {k: h.hexdigest() for k, h in self.hashes.items()}
        self.file.attrs["aamflow_part"] = json.dumps(attrs)
        self.file.close()
        os.replace(self.staging, self.final)

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            self.staging.unlink(missing_ok=True)


class _StrView:
    """Decode HDF5 string datasets to str on read, like zarr's string arrays."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.shape = ds.shape
        self.dtype = np.dtype(object)
        self.chunks = ds.chunks

    def __getitem__(self, key: Any) -> Any:
        return self.ds.asstr()[key]

    def __len__(self) -> int:
        return self.shape[0]


class _H5Part:
    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        self.file = h5py.File(path, "r")
        self.attrs = json.loads(self.file.attrs.get("aamflow_part", "{}"))

    def __getitem__(self, name: str) -> CheckedArray:
        ds = self.file[name]
        view = _StrView(ds) if ds.dtype.kind == "O" else ds
        store = self.path.parent.with_name(self.path.parent.name.removesuffix(".parts"))
        return CheckedArray(view, f"{store}: part {self.path.stem}, array {name}")

    def names(self) -> list[str]:
        return sorted(self.file.keys())

    def dask(self, name: str) -> Any:
        return self[name].dask(lock=True)  # h5py handles are not thread-safe

    def missing_chunks(self, name: str) -> int:
        ds = self.file[name]
        if ds.chunks is None or ds.shape[0] == 0:
            return 0
        expected = -(-ds.shape[0] // ds.chunks[0])
        return expected - ds.id.get_num_chunks()

    def close(self) -> None:
        self.file.close()


@BACKENDS.register("hdf5")
class HDF5Backend:
    """HDF5 through h5py."""

    name = "hdf5"
    suffixes = (".h5", ".hdf5")

    def is_store(self, path: Path) -> bool:
        import h5py

        if not path.is_file():
            return False
        try:
            with h5py.File(path, "r") as f:
                return "aamflow" in f.attrs
        except OSError:
            return False

    def create(self, path: Path, attrs: dict[str, Any]) -> None:
        _parts_dir(path).mkdir(parents=True, exist_ok=True)
        # exclusive: of two runs started together one creates the root, the other resumes it
        self._write_root(path, attrs, [], exclusive=True)

    def _write_root(
        self, path: Path, attrs: dict[str, Any], parts: list[str], exclusive: bool = False
    ) -> None:
        import h5py

        tmp = temp_name(path)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["aamflow"] = json.dumps(attrs.get("aamflow", {}))
                rest = {k: v for k, v in attrs.items() if k != "aamflow"}
                if rest:
                    f.attrs["extra"] = json.dumps(rest)
                grp = f.create_group("parts")
                for name in parts:
                    grp[name] = h5py.ExternalLink(f"{path.name}.parts/{name}.h5", "/")
            if exclusive:
                os.link(tmp, path)  # FileExistsError when another writer was first
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def read_attrs(self, path: Path) -> dict[str, Any]:
        import h5py

        from ..errors import StoreError

        try:
            with h5py.File(path, "r") as f:
                out = {"aamflow": json.loads(f.attrs["aamflow"])}
                if "extra" in f.attrs:
                    out.update(json.loads(f.attrs["extra"]))
        except (ValueError, KeyError, RecursionError) as e:
            raise StoreError(f"{path}: damaged root attributes ({type(e).__name__})") from None
        return out

    def _linked(self, path: Path) -> list[str]:
        import h5py

        with h5py.File(path, "r") as f:
            return list(f["parts"].keys()) if "parts" in f else []

    def write_attrs(self, path: Path, attrs: dict[str, Any]) -> None:
        self._write_root(path, attrs, self._linked(path))

    def committed_parts(self, path: Path) -> list[str]:
        parts = _parts_dir(path)
        if not parts.is_dir():
            return []
        return sorted(p.stem for p in parts.glob("part-*.h5"))

    def part_writer(
        self,
        path: Path,
        name: str,
        specs: dict[str, ArraySpec],
        tails: dict[str, tuple[int, ...]],
        rows_hint: dict[str, int] | None = None,
    ) -> _H5PartWriter:
        return _H5PartWriter(path, name, specs, tails, rows_hint or {})

    def open_part(self, path: Path, name: str) -> _H5Part:
        return _H5Part(_parts_dir(path) / f"{name}.h5")

    def finalize(self, path: Path, parts: list[str]) -> None:
        # external links make the root file open as the whole store in plain h5py
        self._write_root(path, self.read_attrs(path), parts)
