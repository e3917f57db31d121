"""The report: JSON with every figure, Markdown tables, valid PNG plots, a terminal table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from aamflow.stages.eval.report import format_summary_table, privacy_entry, write_report


def _attack(cmap_linear, cmap_mlp, chance_cmap=0.5):
    return {
        "chance": 0.55,
        "chance_cmap": chance_cmap,
        "num_train": 100,
        "num_test": 40,
        "attackers": {
            "linear": {
                "accuracy": 0.6,
                "macro_f1": 0.55,
                "cmap": cmap_linear,
                "chance_cmap": chance_cmap,
            },
            "mlp": {
                "accuracy": 0.7,
                "macro_f1": 0.65,
                "cmap": cmap_mlp,
                "chance_cmap": chance_cmap,
            },
        },
        "strongest": "mlp" if cmap_mlp > cmap_linear else "linear",  # False for NaN
    }


def make_report(with_reference=True):
    raw = _attack(0.80, 0.905) if with_reference else None
    return {
        "stores": {
            "store": {"path": "features.anon.zarr", "uuid": "u-anon", "label": "anonymized"},
            "reference": {"path": "features.zarr", "uuid": "u-raw", "label": "raw"}
            if with_reference
            else None,
        },
        "seeds": {"attack": 0, "split": 1},
        "privacy": {
            "gender": privacy_entry("static", _attack(0.55, 0.6125), raw, values=["f", "m"]),
            "skin_tone": privacy_entry("clips", _attack(0.52, float("nan")), raw),
        },
        "utility": {
            "ar": {"top1": 0.742, "reference": {"top1": 0.749} if with_reference else None},
            "tad": {
                "map": {"0.3": 0.7, "0.4": 0.65, "0.5": 0.6, "0.6": 0.5, "0.7": 0.4},
                "avg": 0.57,
                "reference": {
                    "map": {"0.3": 0.71, "0.4": 0.66, "0.5": 0.61, "0.6": 0.52, "0.7": 0.41},
                    "avg": 0.582,
                }
                if with_reference
                else None,
            },
            "ad": {"auc": np.float32(0.851), "reference": None},
        },
        "bias": {
            "per_group": {"f": 0.80, "m": 0.854},
            "gap": 0.054,
            "reference": {"per_group": {"f": 0.76, "m": 0.854}, "gap": 0.094}
            if with_reference
            else None,
        },
    }


def test_privacy_entry_reduction_uses_each_stores_strongest_attacker():
    entry = privacy_entry("static", _attack(0.55, 0.6125), _attack(0.80, 0.905))
    assert entry["strongest"] == "mlp" and entry["reference"]["strongest"] == "mlp"
    assert entry["reduction"] == pytest.approx((0.905 - 0.6125) / (0.905 - 0.5))
    assert privacy_entry("static", _attack(0.55, 0.6))["reduction"] is None


def test_write_report_produces_json_markdown_and_png(tmp_path):
    paths = write_report(make_report(), tmp_path / "out")
    assert set(paths) == {"json", "md", "tradeoff", "leakage"}
    for key in ("tradeoff", "leakage"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(paths[key])
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100

    data = json.loads(paths["json"].read_text())
    assert data["schema"] == "aamflow.eval_report/1"
    assert data["stores"]["reference"]["uuid"] == "u-raw"
    assert data["seeds"] == {"attack": 0, "split": 1}
    assert data["privacy"]["skin_tone"]["attackers"]["mlp"]["cmap"] is None  # NaN -> null
    assert data["utility"]["ad"]["auc"] == pytest.approx(0.851)
    assert data["privacy"]["gender"]["reduction"] == pytest.approx(0.7222, abs=1e-4)

    md = paths["md"].read_text()
    for needle in (
        "u-anon",
        "u-raw",  # store identities
        "| gender | static | mlp (strongest) | 70.0 | 55.0 | 65.0 | 61.3 | 50.0 | 70.0 | 90.5 |",
        "+11.3",
        "+40.5",
        "72%",  # leakage above chance, raw leakage, reduction
        "| AR | top-1 | 74.2 | 74.9 | -0.7 |",
        "| TAD | mAP@0.7 | 40.0 | 41.0 | -1.0 |",
        "| TAD | avg mAP | 57.0 | 58.2 | -1.2 |",
        "| AD | frame AUC | 85.1 | – | – |",
        "| **gap** | 5.4 | 9.4 |",
        "![tradeoff](tradeoff.png)",
        "![leakage](leakage.png)",
    ):
        assert needle in md, needle


def test_report_without_reference_or_utility(tmp_path):
    report = make_report(with_reference=False)
    del report["utility"]
    paths = write_report(report, tmp_path)
    assert set(paths) == {"json", "md", "leakage"}  # no utility: no trade-off to plot
    md = paths["md"].read_text()
    assert "## Utility" not in md and "raw cMAP" not in md
    assert "| skin_tone | linear | +2.0 |" in md


def test_summary_table_lists_every_headline_figure():
    text = format_summary_table(make_report())
    lines = text.splitlines()
    assert lines[0].split() == ["figure", "(%)", "anonymized", "raw", "change"]
    assert any(
        line.startswith("leak gender (mlp)")
        and "+11.3" in line
        and "+40.5" in line
        and "72%" in line
        for line in lines
    )
    assert any(
        line.startswith("AR top-1") and line.split()[-3:] == ["74.2", "74.9", "-0.7"]
        for line in lines
    )
    assert any(line.startswith("bias gap") and "-4.0" in line for line in lines)
