"""``aamflow demo``: the whole job on the synthetic corpus, as a new user runs it first.

synth (demo preset) -> extract (builtin encoder, or ``--encoder opennsfw``) -> train-adapter
with its defaults (every task with labels seen, unless ``--tasks`` says otherwise) ->
anonymize -> eval against the raw store. Each step resumes: a re-run skips what is already
complete, and an adapter is reused only when its full resolved config matches.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Options of ``aamflow demo``."""

    out: Path = Path("aamflow-demo")
    preset: str = "demo"
    encoder: str = "builtin"  # or opennsfw, the learned image model shipped in its wheel
    tasks: str = "all"  # "ar" leaves TAD and AD unseen (the paper's unseen-task protocol)
    epochs: int | None = None
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    # train-adapter options beyond the defaults (benchmarks use it; the demo itself does not)
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def train_tasks(self) -> str | None:
        if self.tasks in ("all", ""):
            return None
        bad = sorted(set(self.tasks.split(",")) - {"ar", "tad", "ad"})
        if bad:
            raise ConfigError(f"--tasks: unknown {bad}; valid: ar, tad, ad, all")
        return self.tasks


def _step(name: str, quiet: bool) -> float:
    if not quiet:
        print(f"\n== {name} ==", flush=True)
    return time.perf_counter()


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run every stage and return the eval report."""
    from aamflow.schemas.checkpoint import default_adapter_dir
    from aamflow.schemas.store import open_store
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize
    from aamflow.stages.eval.config import EvalConfig
    from aamflow.stages.eval.stage import run_eval
    from aamflow.stages.extract.config import ExtractConfig
    from aamflow.stages.extract.stage import run_extract
    from aamflow.stages.synth import SynthConfig, run_synth
    from aamflow.stages.train.config import TrainConfig
    from aamflow.stages.train.stage import run_train

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    q = config.quiet
    timings: dict[str, float] = {}
    tasks = config.train_tasks()

    t = _step("1/5 synth: render the synthetic corpus", q)
    manifest = run_synth(
        SynthConfig(out=out / "corpus", preset=config.preset, seed=config.seed, quiet=q)
    )
    timings["synth"] = time.perf_counter() - t

    # one set of files per encoder, so both encoders' demos can share a folder
    tag = "" if config.encoder == "builtin" else f"-{config.encoder}"
    t = _step(f"2/5 extract: {config.encoder} encoder -> features{tag}.zarr", q)
    raw = out / f"features{tag}.zarr"
    run_extract(
        ExtractConfig(
            manifest=manifest,
            out=raw,
            encoder=config.encoder,
            device=config.device,
            quiet=q,
            part_size=64,
        )
    )
    timings["extract"] = time.perf_counter() - t

    t = _step(f"3/5 train-adapter (defaults): seen tasks = {tasks or 'all'}", q)
    train = dict(config.train_overrides)
    if config.epochs:
        train["epochs"] = config.epochs
    adapter = default_adapter_dir(raw)
    train_config = TrainConfig.from_cli(
        store=raw,
        out=adapter,
        tasks=tasks,
        seed=config.seed,
        device=config.device,
        quiet=q,
        **train,
    )
    done = _same_training(adapter, train_config, open_store(raw).uuid)
    if not done:  # the demo owns its folder: an adapter of other settings is replaced
        shutil.rmtree(adapter, ignore_errors=True)
        run_train(train_config)
    elif not q:
        print(f"adapter {adapter} already trained with these settings; skipped")
    timings["train-adapter"] = time.perf_counter() - t

    t = _step(f"4/5 anonymize -> features{tag}.anon.zarr", q)
    anon = out / f"features{tag}.anon.zarr"
    run_anonymize(
        AnonymizeConfig(store=raw, out=anon, device=config.device, quiet=q, overwrite=not done)
    )
    timings["anonymize"] = time.perf_counter() - t

    t = _step("5/5 eval: attackers and utility heads, anonymized vs raw", q)
    report = run_eval(
        EvalConfig(store=anon, reference=raw, out=out / f"report{tag}", seed=config.seed, quiet=q)
    )
    timings["eval"] = time.perf_counter() - t
    (out / f"demo_timings{tag}.json").write_text(json.dumps(timings, indent=2))
    if not q:
        total = sum(timings.values())
        print(
            f"\ndemo finished in {total / 60:.1f} min; report in {out / f'report{tag}'}/report.md"
        )
    return report


# settings that do not change what a run computes
_NOT_COMPARED = {"quiet", "device", "precision", "memory_budget", "resume", "val_every", "out"}


def _same_training(adapter: Path, config: Any, store_uuid: str) -> bool:
    """True when ``adapter`` holds a finished run of exactly this resolved config on this
    store (every setting that changes the result is compared, not a chosen few)."""
    meta_file, saved_file = adapter / "adapter.json", adapter / "config.json"
    if not (meta_file.is_file() and saved_file.is_file()):
        return False
    meta, saved = json.loads(meta_file.read_text()), json.loads(saved_file.read_text())
    if meta.get("train_store_uuid") != store_uuid or meta.get("epochs") != config.epochs:
        return False
    wanted = config.to_dict()
    if wanted["tasks"] is None:  # "every task with labels": compare what the run resolved
        wanted["tasks"] = saved.get("tasks")
    keys = (set(wanted) | set(saved)) - _NOT_COMPARED
    return all(saved.get(k) == wanted.get(k) for k in keys)
