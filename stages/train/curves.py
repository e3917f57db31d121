"""Training curves of a train-adapter run as one PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOSS_KEYS = ("loss", "l_lc", "l_t", "l_b")
TASK_KEYS = ("l_ar", "l_tad", "l_ad")
VAL_KEYS = ("val_ar_top1", "val_tad_map", "val_ad_auc", "val_reid_top1")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``train_log.jsonl`` (empty when the file does not exist)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash or a full disk: its epoch is rerun on resume
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [
        (r["epoch"], r[key])
        for r in rows
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Plot the objective and its terms, the task losses and the val metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    panels = (
        (axes[0], LOSS_KEYS, "objective and terms"),
        (axes[1], TASK_KEYS, "task losses (L_T)"),
        (axes[2], VAL_KEYS, "validation"),
    )
    for ax, keys, name in panels:
        for key in keys:
            x, y = _series(rows, key)
            if x:
                ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
