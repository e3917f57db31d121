"""The synth stage: plan the corpus, render and encode every video, write the manifest."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from aamflow.schemas.atomic import atomic_write_text
from aamflow.schemas.errors import ConfigError

from .manifest_writer import MANIFEST_NAME, write_manifest
from .plan import VideoPlan, make_plan
from .presets import get_preset

GENERATOR = "aamflow.synth/1"  # bump when rendering changes, so old folders are not reused
STAMP_NAME = "synth_config.yaml"
_SERIAL_BELOW = 4000  # frames; smaller corpora render in-process (no worker start-up)


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Where and what to generate.

    Parameters
    ----------
    out
        Output folder; created if missing. It receives ``data_manifest.yaml``, the video
        lists, ``videos/`` and ``synth_config.yaml`` (this config).
    preset
        ``tiny`` (unit tests), ``demo`` (about a minute) or ``bench`` (throughput).
    seed
        Corpus seed; the same seed gives the same manifest and the same decoded frames.
    quiet
        Hide the progress bar.
    workers
        Encoder processes; 0 picks one per available CPU core (at most 8).
    """

    out: Path
    preset: str = "demo"
    seed: int = 0
    quiet: bool = False
    workers: int = 0


def run_synth(config: SynthConfig) -> Path:
    """Generate the corpus and return the path of ``data_manifest.yaml``.

    Raises
    ------
    ConfigError
        Unknown preset, or ``out`` already holds something other than this same corpus.
    """
    from aamflow.pipeline.progress import progress_bar

    from .video import h264_encoder

    preset = get_preset(config.preset)
    if config.workers < 0:
        raise ConfigError(f"synth: workers must be >= 0, got {config.workers}")
    h264_encoder()  # fail before writing anything
    out = Path(config.out)
    stamp = _stamp(config)
    _claim(out, stamp)
    plans = make_plan(preset, config.seed)
    for folder in sorted({(out / p.path).parent for p in plans}):
        folder.mkdir(parents=True, exist_ok=True)

    total = sum(p.num_frames for p in plans)
    workers = config.workers or (1 if total < _SERIAL_BELOW else min(_cpu_count(), 8))
    bar = progress_bar(total=len(plans), unit="video", desc="synth", quiet=config.quiet)
    try:
        if workers == 1:
            for p in plans:
                render_one(p, str(out))
                bar.update()
        else:
            import multiprocessing as mp

            # spawn: workers must not inherit a parent's torch/BLAS thread state
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(render_one, p, str(out)) for p in plans]
                for f in as_completed(futures):
                    f.result()
                    bar.update()
    finally:
        bar.close()
    return write_manifest(out, preset, config.seed, plans)


def render_one(plan: VideoPlan, out: str) -> None:
    """Render and encode one planned video (runs in worker processes)."""
    from .render import render_video
    from .video import write_mp4

    n = write_mp4(Path(out) / plan.path, render_video(plan), plan.fps)
    if n != plan.num_frames:  # a bug, not a user error
        raise RuntimeError(f"{plan.id}: wrote {n} frames, planned {plan.num_frames}")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _stamp(config: SynthConfig) -> str:
    """What makes the corpus what it is (not where it goes or how fast it is made)."""
    import yaml

    return yaml.safe_dump(
        {"generator": GENERATOR, "preset": config.preset, "seed": config.seed}, sort_keys=True
    )


def _claim(out: Path, stamp: str) -> None:
    """Refuse a folder that holds anything but this same corpus; then write the stamp."""
    marker = out / STAMP_NAME
    if out.exists() and not out.is_dir():
        raise ConfigError(f"synth: --out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise ConfigError(
                f"synth: --out {out} is not empty and holds no synthetic corpus; "
                "pass an empty or new folder"
            )
        if marker.read_text(encoding="utf-8") != stamp:
            raise ConfigError(
                f"synth: --out {out} already holds a different corpus ({marker.name} differs); "
                "pass a new folder or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, stamp)


__all__ = ["SynthConfig", "run_synth", "MANIFEST_NAME"]
