"""Ablation and baselines on one raw store: which parts of the objective do what.

For each setting it trains an adapter, anonymizes the store and evaluates it against the
raw store with the same attackers and heads, then prints one Markdown table:

- full method (the demo settings: fitted static eraser, L_LC and L_T, no L_B)
- without the eraser, without L_LC, without L_T
- with L_B added (cross-covariance or NT-Xent), and the cross-covariance without the eraser
- the paper's objective: L_B as NT-Xent, no eraser
- the ``paper`` architecture, evaluated one clip at a time (batch-independent anonymize)
- LEACE (concept-erasure package): a supervised linear eraser fitted on the *private
  labels*, which the AAM never sees; an oracle reference, not a competitor

    python benchmarks/ablation.py --store aamflow-demo/features.zarr --out /tmp/ablation
    python benchmarks/ablation.py --store ... --only full,no_lb --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def settings(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    xcov = {"privacy_loss": "xcov", "w_b": 100.0}
    ntxent = {"privacy_loss": "ntxent", "w_b": 1.0}
    return {
        "full": dict(base),
        "no_eraser": {**base, "erase_rank": 0},
        "no_lc": {**base, "w_lc": 0.0},
        "no_lt": {**base, "tasks": "none"},
        "paper_arch": {**base, "arch": "paper"},
        "lb_xcov": {**base, **xcov},
        "lb_ntxent": {**base, **ntxent},
        "lb_xcov_no_eraser": {**base, **xcov, "erase_rank": 0},
        # the paper's objective: NT-Xent L_B (w_b 1), no eraser
        "paper_objective": {**base, **ntxent, "erase_rank": 0},
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
    """The figures of one row: mean and worst strongest-attacker reduction on static
    attributes, and utility against raw."""
    privacy = report["privacy"]
    static = {k: v for k, v in privacy.items() if "@" not in k}
    red = [v["reduction"] for v in static.values() if v.get("reduction") is not None]
    # the same attributes read from ordinary clips: does the removal reach real clips?
    clips = [privacy.get(f"{k}@clips", {}).get("reduction") for k in static]
    clips = [r for r in clips if r is not None]
    u = report.get("utility", {})

    def pair(task: str, key: str) -> tuple[float | None, float | None]:
        t = u.get(task) or {}
        ref = t.get("reference") or {}
        return t.get(key), ref.get(key)

    return {
        "reduction_mean": sum(red) / len(red) if red else None,
        "reduction_min": min(red) if red else None,
        "clips_reduction_mean": sum(clips) / len(clips) if clips else None,
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", type=Path, required=True, help="raw feature store (e.g. the demo's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--only",
        default=None,
        help="comma list of settings (full,no_eraser,no_lc,no_lt,paper_arch,lb_xcov,lb_ntxent,lb_xcov_no_eraser,paper_objective,leace)",
    )
    ap.add_argument("--epochs", type=int, default=None, help="adapter epochs (default: the demo's)")
    ap.add_argument("--tasks", default="ar", help="seen tasks of the full method")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train option, e.g. w_lc=10",
    )
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    from aamflow.pipeline.demo import DEMO_TRAIN

    base: dict[str, Any] = {**DEMO_TRAIN, "tasks": args.tasks}
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
        "| setting | leakage reduction, static clips: mean (worst) | same attributes read from clips: mean | AR top-1 anon / raw | TAD avg mAP anon / raw | AD AUC anon / raw |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['setting']} | {fmt(r['reduction_mean'])}% ({fmt(r['reduction_min'])}%) | "
            f"{fmt(r['clips_reduction_mean'])}% | "
            f"{fmt(r['ar'][0])} / {fmt(r['ar'][1])} | {fmt(r['tad'][0])} / {fmt(r['tad'][1])} | {fmt(r['ad'][0])} / {fmt(r['ad'][1])} |"
        )


if __name__ == "__main__":
    main()
