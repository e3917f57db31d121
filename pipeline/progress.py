"""Progress reporting: a live tqdm bar on a terminal, a few plain lines in a log.

On a terminal, :func:`progress_bar` is tqdm's live bar. When stderr is not a terminal (batch
jobs, CI, ``... > log 2>&1``), tqdm would write a carriage-return update per item, thousands
of them in one log; there it is a :class:`LogProgress` instead, which writes whole lines: one
when the count crosses a step of ``LOG_PERCENT`` percent or after ``LOG_SECONDS`` without a
line (never two within ``LOG_MIN_SECONDS``), and one at the end. ``--quiet`` turns both off.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

LOG_PERCENT = 10  # a line per 10% of the total ...
LOG_SECONDS = 30.0  # ... or after 30 s without one (also when the total is unknown)
LOG_MIN_SECONDS = 2.0  # but never two lines within 2 s (the last line is always written)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


class LogProgress:
    """A tqdm-compatible progress reporter that writes a bounded number of whole lines.

    Supports the part of tqdm's API the stages use: ``update``, ``set_postfix``,
    ``set_postfix_str``, ``close``, ``n``, ``total`` and use as a context manager. A run
    with total ``N`` writes at most ``100 / LOG_PERCENT + 1`` lines plus one per
    ``LOG_SECONDS`` of run time.
    """

    def __init__(
        self,
        *,
        total: int | None,
        desc: str,
        unit: str = "it",
        file: IO[str] | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.file = file
        self._clock = clock
        self._start = clock()
        self._last_time = self._start
        self._last_step = 0
        self._postfix = ""
        self._closed = False
        self._printed_n: int | None = None

    # tqdm API ---------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self._clock()
        since = now - self._last_time
        if since < LOG_MIN_SECONDS:
            return
        step = self._step()
        if (step is not None and step > self._last_step) or since >= LOG_SECONDS:
            self._write(now)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n and self._printed_n != self.n:  # nothing happened: nothing to report
            self._write(self._clock())

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # internals --------------------------------------------------------------------------
    def _step(self) -> int | None:
        if not self.total:
            return None
        return int(100 * min(self.n, self.total) / self.total) // LOG_PERCENT

    def _write(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if self.total:
            count = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{self.n} {self.unit}"
        extra = f", {self._postfix}" if self._postfix else ""
        line = f"{self.desc}: {count}, {elapsed:.0f}s, {rate:.3g} {self.unit}/s{extra}\n"
        out = self.file if self.file is not None else sys.stderr
        out.write(line)
        out.flush()
        self._last_time = now
        self._last_step = self._step() or 0
        self._printed_n = self.n


class _Silent:
    """What a quiet run gets: the same API, no output."""

    n = 0

    def __init__(self, total: int | None) -> None:
        self.total = total

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


def progress_bar(
    *, total: int | None, desc: str, unit: str = "it", quiet: bool = False, **kw: Any
) -> Any:
    """A progress reporter on stderr; use as a context manager.

    A tqdm bar when stderr is a terminal, a :class:`LogProgress` writing a few whole lines
    when it is not, and nothing when ``quiet``.
    """
    if quiet:
        return _Silent(total)
    if not _is_tty(sys.stderr):
        return LogProgress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True, **kw)
