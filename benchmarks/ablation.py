"""Ablation and baselines on one raw store: which parts of the method do what.

For each setting it trains an adapter, anonymizes the store and evaluates it against the
raw store with the same attackers and heads, then prints one Markdown table:

- full method: ``train-adapter``'s defaults (video eraser with its rank chosen from the
  data, L_LC and L_T on every seen task, no L_B)
- without the eraser, without L_LC, without L_T, with L_B (NT-Xent) added
- the recipes ``static-eraser`` (the previous demo) and ``paper`` (the paper's objective)
- LEACE (concept-erasure package): a supervised linear eraser fitted on the *private
  labels*, which the AAM never sees; an oracle reference, not a competitor

    python benchmarks/ablation.py --store aamflow-demo/features.zarr --out /tmp/ablation
    python benchmarks/ablation.py --store ... --only full,no_eraser --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def settings(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Train options per setting: each is ``base`` (the defaults) with one change."""
    return {
        "full": dict(base),
        "no_eraser": {**base, "eraser": "none"},
        "no_lc": {**base, "w_lc": 0.0},
        "no_lt": {**base, "tasks": "none"},
        "lb_ntxent": {**base, "privacy_loss": "ntxent", "w_b": 1.0},
        "static_eraser": {**base, "recipe": "static-eraser"},
        "paper": {**base, "recipe": "paper"},
    }


def train_and_anonymize(store: Path, out: Path, opts: dict[str, Any], quiet: bool) -> Path:
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize
    from aamflow.stages.train.config import TrainConfig
    from aamflow.stages.train.stage import run_train

    adapter = out / "adapter"
    if not (adapter / "adapter.json").is_file():
        run_train(TrainConfig.from_cli(store=store, out=adapter, quiet=quiet, **opts))
    anon = out / "features.anon.zarr"
    if not anon.exists():
        run_anonymize(AnonymizeConfig(store=store, adapter=adapter, out=anon, quiet=quiet))
    return anon


def leace_store(store: Path, out: Path, quiet: bool) -> Path:
    """Erase every static private attribute linearly with LEACE, fitted on train videos."""
    import numpy as np
    import torch
    from concept_erasure import LeaceEraser

    from aamflow.schemas.layout import attribute_column
    from aamflow.schemas.store import create_store, index_store, open_store, store_plan
    from aamflow.stages.anonymize.stage import rewrite_part

    anon = out / "features.leace.zarr"
    if anon.exists():
        return anon
    s = open_store(store)
    v = s.videos
    static = s.read("static_features")
    rows = s.read("static_video")
    train = (v["split"].to_numpy() != "test") & (v["subset"].to_numpy() == "main")
    keep = train[np.searchsorted(v["row"].to_numpy(), rows)]
    onehots = []
    for name, values in s.label_spaces.attributes.items():
        codes = v[attribute_column(name)].to_numpy()[np.searchsorted(v["row"].to_numpy(), rows)]
        oh = np.zeros((len(rows), len(values)), np.float32)
        ok = codes >= 0
        oh[np.arange(len(rows))[ok], codes[ok]] = 1
        onehots.append(oh)
    z = np.concatenate(onehots, 1)
    eraser = LeaceEraser.fit(
        torch.from_numpy(static[keep]).double(), torch.from_numpy(z[keep]).double()
    )

    def transform(x: np.ndarray) -> np.ndarray:
        return eraser(torch.from_numpy(x).double()).float().numpy()

    meta = json.loads(json.dumps(s.meta))
    meta["index"] = None
    meta["provenance"].update(
        anonymized=True, writer="anonymize", adapter_digest="leace", source_store_uuid=s.uuid
    )
    import uuid

    meta["provenance"]["store_uuid"] = str(uuid.uuid4())
    create_store(anon, {"aamflow": meta})
    for plan in store_plan(store):
        rewrite_part(plan, src=str(store), dst=str(anon), transform=transform)
    index_store(anon)
    return anon


def evaluate(anon: Path, raw: Path, out: Path, epochs: int | None, quiet: bool) -> dict[str, Any]:
    from aamflow.stages.eval.config import EvalConfig
    from aamflow.stages.eval.stage import run_eval

    return run_eval(
        EvalConfig(store=anon, reference=raw, out=out / "report", epochs=epochs, quiet=quiet)
    )


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one row: mean and worst strongest-attacker reduction of the static
    attributes on static clips and on ordinary clips, gait's, and utility against raw."""
    privacy = report["privacy"]
    static = [k for k in privacy if "@" not in k]

    def reductions(keys: list[str]) -> list[float]:
        return [
            privacy[k]["reduction"] for k in keys if privacy.get(k, {}).get("reduction") is not None
        ]

    red = reductions(static)
    clips = reductions([f"{k}@clips" for k in static])
    gait = reductions([k for k in privacy if "@" in k and k.split("@")[0] not in static])
    u = report.get("utility", {})

    def pair(task: str, key: str) -> tuple[Any, ...]:
        """(anon, raw, std over seeds, paired 95% interval of anon - raw)."""
        t = u.get(task) or {}
        ref = t.get("reference") or {}
        std = (t.get("spread") or {}).get("std")
        return t.get(key), ref.get(key), std, (t.get("change") or {}).get("ci95")

    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "reduction_mean": mean(red),
        "reduction_min": min(red) if red else None,
        "clips_reduction_mean": mean(clips),
        "clips_reduction_min": min(clips) if clips else None,
        "gait_reduction": mean(gait),
        "ar": pair("ar", "top1"),
        "tad": pair("tad", "avg"),
        "ad": pair("ad", "auc"),
    }


def _parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def fmt(x: float | None, pct: bool = True) -> str:
    return "—" if x is None else (f"{100 * x:.1f}" if pct else f"{x:.2f}")


def fmt_task(p: tuple[Any, ...]) -> str:
    """``anon ±std / raw [lo, hi]``: the paired interval of the change, in points."""
    anon, raw, std, ci = p
    text = f"{fmt(anon)}" + (f" ±{fmt(std)}" if std else "") + f" / {fmt(raw)}"
    if ci:
        text += f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", type=Path, required=True, help="raw feature store (e.g. the demo's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--only",
        default=None,
        help="comma list of settings (full,no_eraser,no_lc,no_lt,lb_ntxent,static_eraser,paper,leace)",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="adapter epochs (default: the recipe's)"
    )
    ap.add_argument("--tasks", default=None, help="seen tasks (default: every task with labels)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train option, e.g. w_lc=10",
    )
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    base: dict[str, Any] = {"tasks": args.tasks}
    if args.epochs:
        base["epochs"] = args.epochs
    for kv in args.set:
        k, v = kv.split("=", 1)
        base[k] = _parse_value(v)
    plan = settings(base)
    names = args.only.split(",") if args.only else [*plan, "leace"]
    rows = []
    for name in names:
        t = time.perf_counter()
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        anon = (
            leace_store(args.store, out, args.quiet)
            if name == "leace"
            else train_and_anonymize(args.store, out, plan[name], args.quiet)
        )
        report = evaluate(anon, args.store, out, None, args.quiet)
        row = {"setting": name, **summarize(report), "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        (out / "row.json").write_text(json.dumps(row, indent=2))
    print(f"\nablation on {args.store} (train options: {json.dumps(base)})\n")
    print(
        "| setting | leakage reduction, static clips: mean (worst) | ordinary clips: mean (worst) | gait | AR top-1 anon / raw [change 95%] | TAD avg mAP anon / raw [change 95%] | AD AUC anon / raw [change 95%] |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['setting']} | {fmt(r['reduction_mean'])}% ({fmt(r['reduction_min'])}%) | "
            f"{fmt(r['clips_reduction_mean'])}% ({fmt(r['clips_reduction_min'])}%) | "
            f"{fmt(r['gait_reduction'])}% | "
            f"{fmt_task(r['ar'])} | {fmt_task(r['tad'])} | {fmt_task(r['ad'])} |"
        )


if __name__ == "__main__":
    main()
