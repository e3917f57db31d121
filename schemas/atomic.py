"""Atomic file writes: the one helper every stage uses for files a reader may open.

A file is written under a unique temporary name beside its target and renamed over it, so a
reader sees the old file or the new one, never half of one. A failed write (disk full,
read-only folder) removes its temporary file and leaves the target untouched.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process and call."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_open(path: str | Path, *, fsync: bool = True, exclusive: bool = False) -> Iterator[IO]:
    """Open a binary file whose content replaces ``path`` only when the block succeeds.

    With ``exclusive`` the file is created only if ``path`` does not exist yet
    (``FileExistsError`` otherwise), so two processes cannot both create it.
    """
    target = Path(path)
    tmp = temp_name(target)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, target)  # fails if the target exists: create-if-absent, atomically
            tmp.unlink()
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(
    path: str | Path, data: bytes, *, fsync: bool = True, exclusive: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, fsync=fsync, exclusive=exclusive) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, data: Any, *, fsync: bool = True, **dumps: Any) -> None:
    """Write ``data`` as JSON (``json.dumps(data, **dumps)`` plus a newline) atomically."""
    dumps.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(data, **dumps) + "\n", fsync=fsync)


def atomic_write_with(path: str | Path, write: Callable[[IO], Any], *, fsync: bool = True) -> None:
    """Let ``write(fh)`` fill a binary file that then replaces ``path`` atomically."""
    with atomic_open(path, fsync=fsync) as fh:
        write(fh)


__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "temp_name",
]
