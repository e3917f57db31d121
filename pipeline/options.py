"""Option groups shared by several verbs, as reusable decorators."""

from __future__ import annotations

import functools
from collections.abc import Callable
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


def compute_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --batch-size, --workers, --scheduler, --part (for stages that run on a cluster)."""
    options = [
        click.option(
            "--device", default="cpu", show_default=True, help="Torch device: cpu, cuda, cuda:1."
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="Clips per forward pass.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Dask worker processes of the local cluster (1 = run in this process).",
        ),
        click.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Join an existing dask.distributed scheduler instead of starting one.",
        ),
        click.option(
            "--part",
            "part_slice",
            default=None,
            metavar="I/N",
            help="Process only slice I of N of the parts (SLURM array jobs); no scheduler.",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def train_default(name: str) -> str:
    """``[default: X]`` for a train-adapter flag, read from ``TrainConfig`` (the one place
    training defaults are declared)."""
    from aamflow.stages.train.config import TrainConfig

    return config_default(TrainConfig, name)


def config_default(config: type, name: str) -> str:
    """``[default: X]`` for a flag whose default a config dataclass declares."""
    import dataclasses

    field = {f.name: f for f in dataclasses.fields(config)}[name]
    return f"[default: {field.default}]"
