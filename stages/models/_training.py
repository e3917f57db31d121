"""Framework code shared by the heads' fit functions: seeding, batching, input scaling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


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
    """Per-dimension mean and std of ``[N, D]`` features (std floored to avoid blow-ups)."""
    feats = feats.float()
    mean = feats.mean(0)
    std = feats.std(0, unbiased=False).clamp_min(1e-6)
    return mean, std


def set_input_stats(module: nn.Module, feats: Tensor) -> None:
    """Store the standardisation of ``feats`` in a head's ``in_mean``/``in_std`` buffers."""
    mean, std = input_stats(feats)
    with torch.no_grad():
        module.in_mean.copy_(mean)
        module.in_std.copy_(std)
