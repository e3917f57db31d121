"""Framework code shared by the heads' fit functions: seeding, batching, input scaling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

STD_FLOOR = 1e-3  # of the largest per-dimension std: below it a dimension is treated as flat


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global RNGs seeded, restoring them afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device) -> list[Tensor]:
    """A seeded shuffle of ``range(n)`` cut into index batches."""
    order = torch.randperm(n, generator=gen).to(device)
    return list(order.split(batch_size))


def input_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of ``[N, D]`` features (std floored to avoid blow-ups).

    The floor is relative (``STD_FLOOR`` of the largest std, at least 1e-6): an erased
    coordinate is constant up to float rounding, and dividing by that rounding would turn
    any later change of it (an AAM in training) into logits of 1e5."""
    feats = feats.float()
    mean = feats.mean(0)
    std = feats.std(0, unbiased=False)
    floor = max(1e-6, STD_FLOOR * float(std.max())) if std.numel() else 1e-6
    return mean, std.clamp_min(floor)


def set_input_stats(module: nn.Module, feats: Tensor) -> None:
    """Store the standardisation of ``feats`` in a head's ``in_mean``/``in_std`` buffers."""
    mean, std = input_stats(feats)
    with torch.no_grad():
        module.in_mean.copy_(mean)
        module.in_std.copy_(std)
