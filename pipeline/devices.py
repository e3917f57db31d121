"""Resolve ``--device`` once, with a clear error for a device that is not there."""

from __future__ import annotations

from typing import Any

from aamflow.schemas.errors import ConfigError


def resolve_device(name: str) -> Any:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` -> ``torch.device``; ConfigError if the
    name is not a device or the device is missing."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"--device {name!r}: not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    return device
