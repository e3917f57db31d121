"""The main job end to end on the tiny corpus: every stage runs and the report is sane.

Marked ``e2e``: it stays in the default run (CI runs one full pipeline); it asserts only
ranges and structure, never figures.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from aamflow.pipeline.demo import DemoConfig, run_demo


def _pct(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and (math.isnan(x) or 0.0 <= x <= 1.0))


PROGRESS_LINE = re.compile(r"^(synth|extract|train-adapter|anonymize|eval): \d+")


@pytest.mark.e2e
def test_demo_on_the_tiny_corpus(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # the first run is not quiet, with stderr captured (not a terminal, as in a batch log)
    report = run_demo(DemoConfig(out=tmp_path, preset="tiny", epochs=3, quiet=False))
    err = capfd.readouterr().err
    assert "\r" not in err  # no carriage-return bar updates in a log
    progress = [line for line in err.splitlines() if PROGRESS_LINE.match(line)]
    stages = {line.split(":")[0] for line in progress}
    assert stages == {"synth", "extract", "train-adapter", "anonymize", "eval"}
    # at most a line per 10% plus the last one, per stage (the tiny run is under 30 s each)
    assert len(progress) <= 5 * 12, progress
    for name in (
        "features.zarr",
        "features.zarr.adapter/adapter.json",
        "features.anon.zarr",
        "report/report.json",
        "report/report.md",
    ):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["stores"]["reference"]["uuid"] != saved["stores"]["store"]["uuid"]
    assert {"skin_tone", "gender", "clothing"} <= set(report["privacy"])
    for entry in report["privacy"].values():
        for res in entry["attackers"].values():
            assert _pct(res["accuracy"]) and _pct(res["cmap"])
    for task in ("ar", "tad", "ad"):
        assert task in report["utility"]
    assert _pct(report["utility"]["ar"]["top1"]) and _pct(report["utility"]["ad"]["auc"])
    # a second run resumes every stage and reproduces the report
    again = run_demo(DemoConfig(out=tmp_path, preset="tiny", epochs=3, quiet=True))
    assert again["utility"]["ar"] == report["utility"]["ar"]
    assert again["privacy"]["clothing"]["attackers"] == report["privacy"]["clothing"]["attackers"]
