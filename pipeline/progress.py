"""Progress reporting: tqdm bars that ``--quiet`` turns off."""

from __future__ import annotations

from typing import Any


def progress_bar(
    *, total: int | None, desc: str, unit: str = "it", quiet: bool = False, **kw: Any
) -> Any:
    """A tqdm bar on stderr (disabled when quiet); use as a context manager."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True, leave=True, **kw
    )
