"""``aamflow eval``: measure a store's privacy leakage and utility, and write one report.

``run_eval(EvalConfig(store=..., reference=..., out=...))`` runs, in order:

1. privacy: the attackers on every private attribute, from static clips and from ordinary
   clips (:mod:`.privacy`);
2. utility: AR top-1, TAD mAP, AD frame AUC (:mod:`.utility`);
3. bias: per-group AR accuracy and the gap on the ``bias`` subset.

Each measurement runs on the store under test and, with ``reference``, on the raw store too;
the report sets the figures side by side (and the relative leakage reduction). A reference must
come from the same encoder and manifest (ConfigError otherwise). Measurements the stores have
no data for are left out and listed under ``notes``. Outputs in ``out``: ``report.json``,
``report.md``, ``tradeoff.png``, ``leakage.png`` and the resolved ``config.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aamflow.schemas.atomic import atomic_write_json
from aamflow.schemas.store import FeatureStore, open_store

from . import privacy, spread, utility
from .config import EvalConfig
from .data import attach_private_labels, check_comparable, store_identity
from .errors import Skipped
from .report import (
    REPORT_SCHEMA,
    format_summary_table,
    headline,
    privacy_entry,
    to_jsonable,
    write_report,
)

log = logging.getLogger("aamflow.eval")

# Figures each privacy entry carries beyond privacy_entry's standard keys.
_PRIVACY_EXTRA = ("num_train", "num_test", "num_train_videos", "num_test_videos", "scored_per")

_UTILITY_TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "ar": utility.ar_top1,
    "tad": utility.tad_map,
    "ad": utility.ad_auc,
}


@dataclass(frozen=True, kw_only=True)
class _Step:
    role: str  # "store" | "reference"
    name: str  # "privacy:<key>", "ar", "tad", "ad", "bias"
    run: Callable[[], dict[str, Any]]


def _plan(
    config: EvalConfig, stores: dict[str, FeatureStore], probes: list[privacy.Probe]
) -> list[_Step]:
    """Every measurement, store then reference for each, in report order."""
    heads = {"seed": config.seed, "epochs": config.epochs, "device": config.device}
    steps: list[_Step] = []
    for task in config.tasks:
        for role, store in stores.items():
            if task == "privacy":
                steps += [
                    _Step(
                        role=role,
                        name=f"privacy:{p.key}",
                        run=lambda s=store, p=p: privacy.run_probe(
                            s,
                            p,
                            attackers=config.attackers,
                            seed=config.seed,
                            max_clips_per_video=config.max_clips_per_video,
                        ),
                    )
                    for p in probes
                ]
            elif task == "bias":
                steps.append(
                    _Step(role=role, name="bias", run=lambda s=store: utility.bias_gap(s, **heads))
                )
            else:
                fn = _UTILITY_TASKS[task]
                seeds = range(config.seed, config.seed + config.utility_seeds)
                steps.append(
                    _Step(
                        role=role,
                        name=task,
                        run=lambda s=store, fn=fn, seeds=seeds: [
                            fn(s, **{**heads, "seed": k}) for k in seeds
                        ],
                    )
                )
    return steps


def _seed_mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One task's entry over its seeds: the first run's counts, each figure averaged."""
    entry = {k: v for k, v in runs[0].items() if k != "scored"}
    for key in ("top1", "auc", "avg"):
        if key in entry:
            entry[key] = float(np.mean([r[key] for r in runs]))
    if "map" in entry:
        entry["map"] = {t: float(np.mean([r["map"][t] for r in runs])) for t in entry["map"]}
    return entry


def _utility_entry(
    runs: list[dict[str, Any]], ref: list[dict[str, Any]] | None, seed: int
) -> dict[str, Any]:
    summary = spread.summarize(
        [r["scored"] for r in runs], [r["scored"] for r in ref] if ref else None, seed=seed
    )
    entry = {**_seed_mean(runs), "spread": {k: summary[k] for k in _SPREAD}}
    entry["reference"] = None
    if ref:
        entry["reference"] = {
            **_seed_mean(ref),
            "spread": {k: summary["reference"][k] for k in _SPREAD},
        }
        entry["change"] = summary["change"]
    return entry


_SPREAD = ("mean", "std", "per_seed", "ci95", "num_seeds")


def _run_steps(steps: list[_Step], quiet: bool) -> tuple[dict[tuple[str, str], Any], list[str]]:
    from aamflow.pipeline.progress import progress_bar

    results: dict[tuple[str, str], Any] = {}
    notes: list[str] = []
    with progress_bar(total=len(steps), desc="eval", unit="step", quiet=quiet) as bar:
        for step in steps:
            bar.set_postfix_str(f"{step.role} {step.name}", refresh=True)
            try:
                results[(step.role, step.name)] = step.run()
            except Skipped as e:
                results[(step.role, step.name)] = None
                notes.append(f"{step.role}: {e}")
                log.info("skipped on %s: %s", step.role, e)
            bar.update()
    return results, notes


def _assemble(
    config: EvalConfig,
    stores: dict[str, FeatureStore],
    probes: list[privacy.Probe],
    results: dict[tuple[str, str], Any],
    notes: list[str],
) -> dict[str, Any]:
    has_ref = "reference" in stores
    identities = {role: store_identity(s) for role, s in stores.items()}
    if has_ref and identities["reference"]["label"] == identities["store"]["label"]:
        identities["reference"]["label"] = "reference"
    report: dict[str, Any] = {
        "stores": {"store": identities["store"], "reference": identities.get("reference")},
        "seeds": {
            "attack": config.seed,
            "bias": config.seed,
            "utility": list(range(config.seed, config.seed + config.utility_seeds)),
            "bootstrap": config.seed,
        },
        "epochs": config.epochs,
        "tasks": list(config.tasks),
    }

    if "privacy" in config.tasks:
        section = {}
        for p in probes:
            mine = results.get(("store", f"privacy:{p.key}"))
            ref = results.get(("reference", f"privacy:{p.key}"))
            if mine is None:
                continue
            entry = privacy_entry(p.source, mine, ref, values=list(p.values))
            entry.update(
                spread.leakage_intervals(
                    (mine["scored"], mine["scored_ids"], mine["strongest"]),
                    (ref["scored"], ref["scored_ids"], ref["strongest"]) if ref else None,
                    seed=config.seed,
                )
            )
            entry["attribute"] = p.attribute
            entry.update({k: mine[k] for k in _PRIVACY_EXTRA})
            section[p.key] = entry
        if section:
            report["privacy"] = section
            report["headline"] = headline(section)

    utility_section = {}
    for task in ("ar", "tad", "ad"):
        if task in config.tasks and results.get(("store", task)) is not None:
            utility_section[task] = _utility_entry(
                results[("store", task)], results.get(("reference", task)), config.seed
            )
    if utility_section:
        report["utility"] = utility_section
    if "bias" in config.tasks and results.get(("store", "bias")) is not None:
        report["bias"] = {
            **results[("store", "bias")],
            "reference": results.get(("reference", "bias")),
        }
    report["notes"] = notes
    return report


def _private_labels(config: EvalConfig, stores: dict[str, FeatureStore]) -> list[str]:
    """Attach private labels to stores that have none (an anonymized store), from
    ``--manifest`` or else ``--reference``; returns notes for the report."""
    notes = []
    manifest = None
    if config.manifest is not None:
        from aamflow.schemas.manifest import load_manifest

        manifest = load_manifest(config.manifest)
    for role, store in stores.items():
        if manifest is not None:
            source, what = manifest, f"--manifest {config.manifest}"
            digest = store.provenance.get("manifest_digest")
            if digest != manifest.digest:
                notes.append(
                    f"{role}: extracted from manifest {digest}, --manifest is {manifest.digest}; "
                    "labels matched by video id"
                )
        elif role == "store" and "reference" in stores:
            source, what = stores["reference"], f"--reference {config.reference}"
        else:
            continue
        got = attach_private_labels(store, source, what)
        if got:
            notes.append(f"{role}: private labels ({', '.join(got)}) read from {what}")
    return notes


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.store`` (against ``config.reference``) and write the report.

    Returns
    -------
    dict
        The report as written to ``report.json`` (see :mod:`.report` for its structure; privacy
        entries for the clip source are keyed ``<attribute>@clips``, and every section carries
        its video counts). Skipped measurements are listed in ``notes``.
    """
    stores = {"store": open_store(config.store)}
    try:
        notes: list[str] = []
        if config.reference is not None:
            stores["reference"] = open_store(config.reference)
            notes += check_comparable(stores["store"], stores["reference"])
        for note in notes:
            log.warning("%s", note)
        notes += _private_labels(config, stores)  # informational: not warnings
        probes = privacy.plan_probes(stores["store"], config.privacy_sources)
        steps = _plan(config, stores, probes)
        results, skipped = _run_steps(steps, config.quiet)
        report = _assemble(config, stores, probes, results, notes + skipped)
    finally:
        for store in stores.values():
            store.close()

    paths = write_report(report, config.out)
    atomic_write_json(Path(config.out) / "config.json", config.to_dict())
    if not config.quiet:
        print(format_summary_table(report))
        print(f"report: {paths['md']}")
    return to_jsonable({"schema": REPORT_SCHEMA, **report})
