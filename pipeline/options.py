"""Option groups shared by several verbs, as reusable decorators."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def pass_quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the global ``--quiet`` flag as the ``quiet`` keyword."""

    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        quiet = bool((ctx.obj or {}).get("quiet", False))
        return fn(quiet, *args, **kwargs)

    return wrapper


def config_default(config: type, name: str) -> Any:
    """A stage config dataclass's default for ``name`` (the one place it is declared)."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(config)}[name]


def compute_options(config: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--device, --batch-size, --workers, --scheduler, --slurm-config, --part (for the verbs
    that run part tasks), with the defaults ``config`` (a stage's config dataclass) declares."""

    def default(name: str) -> Any:
        return config_default(config, name)

    options = [
        click.option(
            "--device",
            default=default("device"),
            show_default=True,
            help="Torch device: cpu, cuda, cuda:1.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=default("batch_size"),
            show_default=True,
            help="Clips per forward pass.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=default("workers"),
            show_default=True,
            help="Dask worker processes of a local cluster; 1 = in this process, 0 = sized to "
            "the machine (one per core and part, in this process for small inputs).",
        ),
        click.option(
            "--scheduler",
            default=default("scheduler"),
            metavar="ADDRESS",
            help="Join an existing dask.distributed scheduler instead of starting one.",
        ),
        click.option(
            "--slurm-config",
            type=click.Path(path_type=Path, dir_okay=False),
            default=default("slurm_config"),
            metavar="YAML",
            help="Run the parts as dask-jobqueue SLURM batch jobs (see examples/slurm.yaml).",
        ),
        click.option(
            "--part",
            "part_slice",
            default=default("part_slice"),
            metavar="I/N",
            help="Process only slice I of N of the parts (SLURM array jobs); no scheduler.",
        ),
    ]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return decorate


def train_default(name: str) -> str:
    """``[default: X]`` for a train-adapter flag, read from ``TrainConfig`` (the one place
    training defaults are declared)."""
    from aamflow.stages.train.config import TrainConfig

    return default_text(TrainConfig, name)


def default_text(config: type, name: str) -> str:
    """``[default: X]`` for a flag whose default a config dataclass declares."""
    return f"[default: {config_default(config, name)}]"
