"""Progress output: a live bar on a terminal, a bounded number of whole lines in a log."""

from __future__ import annotations

import io
import sys

import pytest

from aamflow.pipeline import progress
from aamflow.pipeline.progress import LogProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_writes_a_line_per_ten_percent_not_per_item() -> None:
    out, clock = io.StringIO(), Clock()
    with LogProgress(total=1000, desc="extract", unit="video", file=out, clock=clock) as bar:
        for _ in range(1000):
            clock.t += 0.05  # 50 s in all: 20 items/s
            bar.update(1)
            bar.set_postfix(clips_s="12.0")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 10 <= len(lines) <= 11  # every 10%, and the end
    assert lines[-1].startswith("extract: 1000/1000 video (100%), 50s")
    assert lines[-1].endswith("clips_s=12.0")


def test_log_progress_time_lines_without_a_total_and_a_floor_between_lines() -> None:
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(total=None, desc="anonymize", unit="part", file=out, clock=clock)
    for _ in range(100):
        clock.t += 3.0  # 300 s: a heartbeat every 30 s
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    assert len(out.getvalue().splitlines()) == 10
    fast, clock = io.StringIO(), Clock()
    bar = LogProgress(total=4, desc="eval", unit="step", file=fast, clock=clock)
    for _ in range(4):
        clock.t += 0.1  # each step crosses 10%, but all within 2 s: only the final line
        bar.update(1)
    bar.close()
    assert fast.getvalue().splitlines() == ["eval: 4/4 step (100%), 0s, 10 step/s"]


def test_progress_bar_is_live_on_a_tty_lines_off_it_and_silent_when_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(total=3, desc="x"), LogProgress)
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress_bar(total=3, desc="x")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()
    assert "\r" in sys.stderr.getvalue()  # the live bar
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    quiet = progress_bar(total=3, desc="x", quiet=True)
    with quiet:
        quiet.update(2)
        quiet.set_postfix(a=1)
    assert sys.stderr.getvalue() == ""
    assert progress.LOG_PERCENT == 10
