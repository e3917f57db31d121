"""The evaluation report: one nested dict written as JSON, Markdown and PNG plots.

All figures are fractions in [0, 1] in the dict and the JSON; Markdown and the terminal table show
them as percentages. Missing values are ``None`` (NaN is written as ``null``). Any section, and any
task inside ``utility``, may be absent when the store has no labels for it. ``reference`` entries
hold the same figures measured on the reference (raw) store, or ``None`` when there is none.

The report dict::

    {
      "schema": "aamflow.eval_report/1",
      "stores": {
        "store":     {"path": str, "uuid": str, "label": "anonymized", ...},  # store under test
        "reference": {"path": str, "uuid": str, "label": "raw", ...} | None,
      },
      "seeds": {"attack": int, ...},                 # every seed used, free keys
      "privacy": {
        "<attribute>": {                             # e.g. "skin_tone"
          "source": "static" | "clips",              # which features the attackers read
          "values": [str, ...],                      # optional: the attribute's class names
          "chance": float,                           # majority-class accuracy on the test split
          "chance_cmap": float,                      # cMAP of an input-blind scorer
          "attackers": {
            "<attacker>": {"accuracy": float, "macro_f1": float, "cmap": float,
                           "chance_cmap": float},
            ...
          },
          "strongest": "<attacker>",                 # highest cMAP above chance
          "reference": {"chance", "chance_cmap", "attackers", "strongest"} | None,
          "reduction": float | None,                 # leakage_reduction of strongest cMAPs
          "leakage_ci95": [lo, hi] | None,           # bootstrap over test videos: the
          "reference_leakage_ci95": [lo, hi] | None, #   strongest cMAP above chance and,
          "reduction_ci95": [lo, hi] | None,         #   paired, the reduction
          "paired_videos": int, "undefined_draws": int,
        },
      },
      "headline": {                                  # the line the summary leads with
        "worst": {"key", "attribute", "source", "reduction", "reduction_ci95",
                  "strongest"} | None,
        "temporal": [{same keys}, ...],              # attributes read from clips only (gait)
      },
      "utility": {                                   # figures: the mean over utility seeds
        "ar":  {"top1": float, "spread": SPREAD, "reference": {"top1", "spread"} | None,
                "change": CHANGE},
        "tad": {"map": {"0.3": float, ..., "0.7": float}, "avg": float, "spread": SPREAD,
                "reference": {"map": {...}, "avg": float, "spread": SPREAD} | None,
                "change": CHANGE},
        "ad":  {"auc": float, "spread": SPREAD, "reference": {...} | None, "change": CHANGE},
      },
      # SPREAD: {"mean", "std" (over seeds, ddof=1), "per_seed": [...], "ci95": [lo, hi]
      #          (bootstrap over test videos of the seed mean), "num_seeds"}
      # CHANGE (with a reference): {"mean", "ci95", "paired_videos"}: store minus reference,
      #          bootstrapped with the same test videos drawn from both
      "bias": {
        "per_group": {"<group>": float, ...},        # AR top-1 per group
        "gap": float,                                # max - min over groups
        "reference": {"per_group": {...}, "gap": float} | None,
      },
    }

:func:`privacy_entry` builds one ``privacy`` entry from :func:`~.attackers.attack` results, and
:func:`write_report` writes ``report.json``, ``report.md``, ``tradeoff.png`` and ``leakage.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aamflow.schemas.atomic import atomic_write_text

from .metrics import leakage_reduction

__all__ = [
    "REPORT_SCHEMA",
    "format_summary_table",
    "headline",
    "privacy_entry",
    "strongest_leakage",
    "to_jsonable",
    "write_report",
]

REPORT_SCHEMA = "aamflow.eval_report/1"

# Utility figures plotted and tabulated: (task, label, getter of the headline number).
_UTILITY = (
    ("ar", "AR top-1", lambda d: d.get("top1")),
    ("tad", "TAD avg mAP", lambda d: d.get("avg")),
    ("ad", "AD AUC", lambda d: d.get("auc")),
)


# --------------------------------------------------------------------------------- building


def strongest_leakage(result: Mapping[str, Any] | None) -> float | None:
    """cMAP above chance of the strongest attacker in one attack result (None if unknown)."""
    if not result or not result.get("attackers"):
        return None
    best = result["attackers"].get(result.get("strongest"))
    if best is None:
        return None
    return _num(best.get("cmap")) - _num(best.get("chance_cmap", result.get("chance_cmap")))


def privacy_entry(
    source: str,
    result: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
    values: list[str] | None = None,
) -> dict[str, Any]:
    """One ``privacy[<attribute>]`` entry from :func:`attack` outputs on the store and reference.

    ``reduction`` compares the strongest attacker's cMAP on each store (each store's own
    strongest), so it measures the worst case the anonymization leaves.
    """
    keep = ("chance", "chance_cmap", "attackers", "strongest")
    entry: dict[str, Any] = {"source": source}
    if values is not None:
        entry["values"] = list(values)
    entry.update({k: result[k] for k in keep})
    entry["reference"] = None if reference is None else {k: reference[k] for k in keep}
    entry["reduction"] = None
    if reference is not None:
        raw = reference["attackers"][reference["strongest"]]["cmap"]
        anon = result["attackers"][result["strongest"]]["cmap"]
        entry["reduction"] = leakage_reduction(raw, anon, reference["chance_cmap"])
    return entry


def headline(privacy: Mapping[str, Any]) -> dict[str, Any]:
    """The worst static attribute over both feature sources (the lowest leakage reduction
    of the strongest attacker), and each temporal attribute (one read from clips only)."""

    def item(key: str, e: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "key": key,
            "attribute": e.get("attribute", key.split("@")[0]),
            "source": e.get("source"),
            "reduction": e.get("reduction"),
            "reduction_ci95": e.get("reduction_ci95"),
            "strongest": e.get("strongest"),
        }

    static = {e.get("attribute") for e in privacy.values() if e.get("source") == "static"}
    scored = [
        item(k, e)
        for k, e in privacy.items()
        if e.get("attribute") in static and e.get("reduction") is not None
    ]
    worst = min(scored, key=lambda d: d["reduction"]) if scored else None
    temporal = [item(k, e) for k, e in privacy.items() if e.get("attribute") not in static]
    return {"worst": worst, "temporal": temporal}


def headline_lines(report: Mapping[str, Any]) -> list[str]:
    """The summary's first lines: the worst static attribute across both sources, then each
    temporal attribute; nothing without a reference (no reduction to rank)."""
    head = report.get("headline") or {}
    worst = head.get("worst")
    if not worst:
        return []
    where = {"static": "static clips", "clips": "ordinary clips"}
    lines = [
        f"worst attribute: {worst['attribute']} on {where.get(worst['source'], worst['source'])}"
        f", leakage reduced {_ratio(worst['reduction'])}{_ratio_ci(worst.get('reduction_ci95'))}"
        f" (strongest attacker {worst['strongest']})"
    ]
    for t in head.get("temporal") or []:
        lines.append(
            f"temporal attribute: {t['attribute']} on ordinary clips, leakage reduced "
            f"{_ratio(t['reduction'])}{_ratio_ci(t.get('reduction_ci95'))} (strongest "
            f"attacker {t['strongest']})"
        )
    return lines


def to_jsonable(obj: Any) -> Any:
    """Plain-JSON copy of a report: numpy to Python, NaN/inf to None, Paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------- formatting


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _pct(x: Any, signed: bool = False) -> str:
    v = _num(x)
    if not math.isfinite(v):
        return "–"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _ratio(x: Any) -> str:
    v = _num(x)
    return f"{100 * v:.0f}%" if math.isfinite(v) else "–"


def _ratio_ci(ci: Any) -> str:
    """`` [lo, hi]`` of a reduction's bootstrap interval; empty without one."""
    if not ci:
        return ""
    return f" [{100 * ci[0]:+.0f}%, {100 * ci[1]:+.0f}%]"


def _pct_ci(ci: Any) -> str:
    if not ci:
        return ""
    return f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _store_names(report: Mapping[str, Any]) -> tuple[str, str]:
    stores = report.get("stores") or {}
    ref = stores.get("reference")
    name = (stores.get("store") or {}).get("label") or ("anonymized" if ref else "store")
    ref_name = (ref or {}).get("label") or "raw"
    return name, ref_name


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _privacy_md(report: Mapping[str, Any], name: str, ref_name: str) -> list[str]:
    privacy = report.get("privacy") or {}
    if not privacy:
        return []
    has_ref = any(e.get("reference") for e in privacy.values())
    out = [
        "## Privacy leakage",
        "",
        "Attackers trained on the store's training videos and scored "
        "on held-out videos. Lower is better; chance is what a blind guess reaches.",
        "",
    ]
    header = [
        "attribute",
        "source",
        "attacker",
        "accuracy",
        "chance acc.",
        "macro F1",
        "cMAP",
        "chance cMAP",
    ]
    if has_ref:
        header += [f"{ref_name} accuracy", f"{ref_name} cMAP"]
    rows = []
    for attr, e in privacy.items():
        ref = e.get("reference") or {}
        for att, m in e.get("attackers", {}).items():
            mark = " (strongest)" if att == e.get("strongest") else ""
            row = [
                attr,
                str(e.get("source", "")),
                att + mark,
                _pct(m.get("accuracy")),
                _pct(e.get("chance")),
                _pct(m.get("macro_f1")),
                _pct(m.get("cmap")),
                _pct(m.get("chance_cmap", e.get("chance_cmap"))),
            ]
            if has_ref:
                rm = (ref.get("attackers") or {}).get(att) or {}
                row += [_pct(rm.get("accuracy")), _pct(rm.get("cmap"))]
            rows.append(row)
    out += _md_table(header, rows)

    out += [
        "### Strongest attacker per attribute",
        "",
        "In brackets, 95% bootstrap intervals over test videos (a video's clips drawn "
        "together); the reduction's draws take the same videos from both stores.",
        "",
    ]
    header = ["attribute", f"{name} strongest", f"{name} cMAP above chance"]
    if has_ref:
        header += [f"{ref_name} strongest", f"{ref_name} cMAP above chance", "leakage reduction"]
    rows = []
    for attr, e in privacy.items():
        leak = _pct(strongest_leakage(e), signed=True) + _pct_ci(e.get("leakage_ci95"))
        row = [attr, str(e.get("strongest")), leak]
        if has_ref:
            ref = e.get("reference")
            row += [
                str((ref or {}).get("strongest", "–")),
                _pct(strongest_leakage(ref), signed=True)
                + _pct_ci(e.get("reference_leakage_ci95")),
                _ratio(e.get("reduction")) + _ratio_ci(e.get("reduction_ci95")),
            ]
        rows.append(row)
    return out + _md_table(header, rows)


def _spread(d: Mapping[str, Any] | None) -> str:
    """``±std [lo, hi]`` of a figure's spread (seeds, then the bootstrap over test videos)."""
    sp = (d or {}).get("spread") or {}
    if not sp:
        return ""
    ci = sp.get("ci95")
    text = f"±{_pct(sp.get('std'))}" if sp.get("num_seeds", 1) > 1 else ""
    if ci:
        text += f" [{_pct(ci[0])}, {_pct(ci[1])}]"
    return text.strip()


def _change(value: Any, ref_value: Any, d: Mapping[str, Any] | None = None) -> str:
    """Store minus reference in points, with the paired bootstrap interval when known."""
    text = _pct(_num(value) - _num(ref_value), signed=True)
    ci = ((d or {}).get("change") or {}).get("ci95")
    return text + (f" [{_pct(ci[0], True)}, {_pct(ci[1], True)}]" if ci else "")


def _utility_md(report: Mapping[str, Any], name: str, ref_name: str) -> list[str]:
    utility = report.get("utility") or {}
    if not utility:
        return []
    has_ref = any((v or {}).get("reference") for v in utility.values())
    seeds = max(((v or {}).get("spread") or {}).get("num_seeds", 1) for v in utility.values())
    out = ["## Utility", ""]
    if seeds > 1:
        out += [
            f"Each figure is the mean over {seeds} seeds of the task head, ± their standard "
            "deviation, with a 95% bootstrap interval over test videos in brackets; the change "
            "is bootstrapped with the same videos drawn from both stores.",
            "",
        ]
    spread = any((v or {}).get("spread") for v in utility.values())
    header = ["task", "metric", name] + (["spread"] if spread else [])
    if has_ref:
        header += [ref_name] + ([f"{ref_name} spread"] if spread else []) + ["change (points)"]
    rows: list[list[str]] = []

    def add(task: str, metric: str, value: Any, ref_value: Any, d: Any = None) -> None:
        row = [task, metric, _pct(value)] + ([_spread(d)] if spread else [])
        if has_ref:
            ref = (d or {}).get("reference")
            row += [_pct(ref_value)] + ([_spread(ref)] if spread else [])
            row.append(_change(value, ref_value, d))
        rows.append(row)

    for task, _label, get in _UTILITY:
        d = utility.get(task)
        if not d:
            continue
        ref = d.get("reference") or {}
        if task == "tad":
            for t, v in (d.get("map") or {}).items():
                add("TAD", f"mAP@{t}", v, (ref.get("map") or {}).get(t))
        metric = {"ar": "top-1", "tad": "avg mAP", "ad": "frame AUC"}[task]
        add(task.upper(), metric, get(d), get(ref), d)
    return out + _md_table(header, rows)


def _bias_md(report: Mapping[str, Any], name: str, ref_name: str) -> list[str]:
    bias = report.get("bias") or {}
    if not bias:
        return []
    ref = bias.get("reference") or {}
    out = ["## Bias", "", "Action top-1 per group on the bias split; the gap is max − min.", ""]
    header = ["group", name] + ([ref_name] if ref else [])
    rows = [
        [g, _pct(v)] + ([_pct((ref.get("per_group") or {}).get(g))] if ref else [])
        for g, v in (bias.get("per_group") or {}).items()
    ]
    rows.append(["**gap**", _pct(bias.get("gap"))] + ([_pct(ref.get("gap"))] if ref else []))
    return out + _md_table(header, rows)


def _render_md(report: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    name, ref_name = _store_names(report)
    stores = report.get("stores") or {}
    out = ["# aamflow evaluation report", "", "All figures in percent.", ""]
    for role in ("store", "reference"):
        s = stores.get(role)
        if s:
            desc = ", ".join(f"{k}: `{v}`" for k, v in s.items())
            out.append(f"- {role}: {desc}")
    if report.get("seeds"):
        out.append("- seeds: " + ", ".join(f"{k}={v}" for k, v in report["seeds"].items()))
    out.append("")
    out += _privacy_md(report, name, ref_name)
    out += _utility_md(report, name, ref_name)
    out += _bias_md(report, name, ref_name)
    if plots:
        out += ["## Plots", ""]
        out += [f"![{key}]({path.name})" for key, path in plots.items()] + [""]
    return "\n".join(out)


def format_summary_table(report: Mapping[str, Any]) -> str:
    """A short fixed-width summary for the terminal: leakage, utility and bias, in percent."""
    name, ref_name = _store_names(report)
    has_ref = bool((report.get("stores") or {}).get("reference"))
    cols = [name] + ([ref_name, "change"] if has_ref else [])
    rows: list[list[str]] = []
    for attr, e in (report.get("privacy") or {}).items():
        anon, raw = strongest_leakage(e), strongest_leakage(e.get("reference"))
        row = [f"leak {attr} ({e.get('strongest')})", _pct(anon, signed=True)]
        if has_ref:
            row += [_pct(raw, signed=True), f"reduction {_ratio(e.get('reduction'))}"]
        rows.append(row)
    for task, label, get in _UTILITY:
        d = (report.get("utility") or {}).get(task)
        if d:
            v, r = get(d), get(d.get("reference") or {})
            row = [label, f"{_pct(v)} {_spread(d)}".strip()]
            if has_ref:
                ref = d.get("reference") or {}
                row += [f"{_pct(r)} {_spread(ref)}".strip(), _change(v, r, d)]
            rows.append(row)
    bias = report.get("bias")
    if bias:
        row = ["bias gap", _pct(bias.get("gap"))]
        if has_ref:
            r = (bias.get("reference") or {}).get("gap")
            row += [_pct(r), _pct(_num(bias.get("gap")) - _num(r), signed=True)]
        rows.append(row)
    table = [["figure (%)"] + cols] + [r + [""] * (len(cols) + 1 - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    head = headline_lines(report)
    return "\n".join(head + ([""] if head else []) + lines)


# ------------------------------------------------------------------------------------- plots


def _mean_leakage(report: Mapping[str, Any], reference: bool) -> float | None:
    vals = []
    for e in (report.get("privacy") or {}).values():
        v = strongest_leakage(e.get("reference") if reference else e)
        if v is not None and math.isfinite(v):
            vals.append(v)
    return float(np.mean(vals)) if vals else None


def _plot_tradeoff(report: Mapping[str, Any], path: Path) -> bool:
    from matplotlib.figure import Figure  # Figure renders through Agg; no pyplot state

    name, ref_name = _store_names(report)
    x_anon, x_raw = _mean_leakage(report, False), _mean_leakage(report, True)
    utility = report.get("utility") or {}
    series = [
        (label, get(utility[t]), get(utility[t].get("reference") or {}))
        for t, label, get in _UTILITY
        if utility.get(t)
    ]
    series = [s for s in series if s[1] is not None]
    if x_anon is None or not series:
        return False
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, y_anon, y_raw) in enumerate(series):
        color = f"C{i}"
        ax.scatter(
            [100 * x_anon], [100 * y_anon], color=color, marker="o", s=60, label=f"{label} ({name})"
        )
        if x_raw is not None and y_raw is not None:
            ax.scatter(
                [100 * x_raw],
                [100 * y_raw],
                facecolors="none",
                edgecolors=color,
                marker="s",
                s=60,
                label=f"{label} ({ref_name})",
            )
            ax.annotate(
                "",
                xy=(100 * x_anon, 100 * y_anon),
                xytext=(100 * x_raw, 100 * y_raw),
                arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.6},
            )
    ax.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(
        "privacy leakage: strongest attacker cMAP above chance (points, mean over attributes)",
        fontsize=8,
    )
    ax.set_ylabel("utility (%)")
    ax.set_title("Privacy–utility trade-off (left = more private, up = more useful)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    return True


def _strongest_cmap(result: Mapping[str, Any] | None) -> float:
    result = result or {}
    return _num(((result.get("attackers") or {}).get(result.get("strongest")) or {}).get("cmap"))


def _plot_leakage(report: Mapping[str, Any], path: Path) -> bool:
    from matplotlib.figure import Figure

    name, ref_name = _store_names(report)
    privacy = report.get("privacy") or {}
    if not privacy:
        return False
    attrs = list(privacy)
    anon = [100 * _strongest_cmap(privacy[a]) for a in attrs]
    raw = [100 * _strongest_cmap(privacy[a].get("reference")) for a in attrs]
    chance = [100 * _num(privacy[a].get("chance_cmap")) for a in attrs]
    has_ref = any(math.isfinite(v) for v in raw)
    x = np.arange(len(attrs))
    width = 0.38 if has_ref else 0.6
    fig = Figure(figsize=(max(5.0, 1.2 * len(attrs) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    if has_ref:
        ax.bar(x - width / 2, raw, width, label=ref_name, color="C3")
        ax.bar(x + width / 2, anon, width, label=name, color="C0")
    else:
        ax.bar(x, anon, width, label=name, color="C0")
    ax.hlines(chance, x - 0.45, x + 0.45, colors="k", linestyles="--", label="chance cMAP")
    ax.set_xticks(x, attrs, rotation=20 if len(attrs) > 4 else 0)
    ax.set_ylabel("strongest attacker cMAP (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Private-attribute leakage per attribute", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return True


# ------------------------------------------------------------------------------------- write


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``.

    Plots whose inputs are missing (no privacy or no utility figures) are skipped.

    Returns
    -------
    dict
        ``{"json": Path, "md": Path, "tradeoff": Path, "leakage": Path}``, plots only when drawn.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = to_jsonable({"schema": REPORT_SCHEMA, **report})
    plots: dict[str, Path] = {}
    for key, draw in (("tradeoff", _plot_tradeoff), ("leakage", _plot_leakage)):
        path = out_dir / f"{key}.png"
        if draw(data, path):
            plots[key] = path
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md"}
    atomic_write_text(paths["json"], json.dumps(data, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], _render_md(data, plots))
    return {**paths, **plots}
