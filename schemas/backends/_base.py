"""The storage interface every backend implements, and the backend registry.

The logical store (``aamflow.schemas.store``) sees only this interface. A backend stores
root attributes, committed parts, and a staging area where one writer builds one part
before an atomic rename commits it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._registry import Registry
from ..layout import ArraySpec


class PartWriter(Protocol):
    """Builds one part in staging; nothing is visible until ``commit``."""

    def append(self, name: str, rows: np.ndarray) -> None: ...

    def commit(self, attrs: dict[str, Any]) -> None: ...

    def abort(self) -> None: ...


class PartReader(Protocol):
    """A committed part: arrays by name (sliceable, with .shape/.dtype) and attributes."""

    attrs: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any: ...

    def names(self) -> list[str]: ...

    def dask(self, name: str) -> Any: ...

    def missing_chunks(self, name: str) -> int: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """One storage engine (zarr, hdf5)."""

    name: str
    suffixes: tuple[str, ...]

    def is_store(self, path: Path) -> bool: ...

    def create(self, path: Path, attrs: dict[str, Any]) -> None: ...

    def read_attrs(self, path: Path) -> dict[str, Any]: ...

    def write_attrs(self, path: Path, attrs: dict[str, Any]) -> None: ...

    def committed_parts(self, path: Path) -> list[str]: ...

    def part_writer(
        self,
        path: Path,
        name: str,
        specs: dict[str, ArraySpec],
        tails: dict[str, tuple[int, ...]],
        rows_hint: dict[str, int] | None = None,
    ) -> PartWriter: ...

    def open_part(self, path: Path, name: str) -> PartReader: ...

    def finalize(self, path: Path, parts: list[str]) -> None: ...


BACKENDS: Registry = Registry("store backend")


class CheckedArray:
    """A part's array whose read errors (a corrupted chunk's checksum, an I/O error) become
    one StoreError naming the part and the array, on every read path including dask."""

    def __init__(self, array: Any, where: str) -> None:
        self.array = array
        self.where = where
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        self.chunks = getattr(array, "chunks", None)

    def __getitem__(self, key: Any) -> Any:
        from ..errors import StoreError

        try:
            return self.array[key]
        except StoreError:
            raise
        except Exception as e:  # codec checksum failures surface here as RuntimeError
            first = " ".join(str(e).split())[:200] or type(e).__name__
            raise StoreError(f"{self.where}: unreadable ({first})") from None

    def __len__(self) -> int:
        return self.shape[0]

    def dask(self, lock: bool = False) -> Any:
        """This array as a lazy dask array over its storage chunks."""
        import dask.array as da

        chunks = self.chunks if self.chunks and self.shape[0] else "auto"
        return da.from_array(self, chunks=chunks, lock=lock, name=False, asarray=True)


def chunk_rows(
    spec: ArraySpec, tail: tuple[int, ...], target_bytes: int = 4 << 20, hint: int | None = None
) -> int:
    """Rows per chunk: about ``target_bytes`` of row data, capped so narrow columns do not
    get huge chunks (a chunk is stored and decoded whole, even when mostly empty), and at
    ``hint`` when the final row count is known (the videos table of a part)."""
    itemsize = 8 if spec.dtype == "str" else np.dtype(spec.dtype).itemsize
    row_bytes = itemsize * int(np.prod(tail, dtype=np.int64)) if tail else itemsize
    cap = 4096 if spec.dtype == "str" else 65536
    rows = int(max(256, min(cap, target_bytes // max(row_bytes, 1))))
    if hint is not None:
        rows = max(1, min(rows, hint))
    return rows
