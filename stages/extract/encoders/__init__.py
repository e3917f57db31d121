"""Encoder registry: ``create_encoder(name, **options)``.

Families: ``builtin`` (training-free, no download), ``videomae``, ``vjepa2`` and
``torchvision:<arch>``. Each family is one module here and registers itself on import.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import ENCODERS, Encoder, EncoderIdentity, register_encoder, weights_digest

_FAMILY_MODULES = ("builtin", "videomae", "vjepa2", "torchvision_", "onnx_")


def _load_families() -> None:
    for mod in _FAMILY_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:  # a family module not written yet
            if e.name != f"{__name__}.{mod}":
                raise


def create_encoder(name: str, **options: Any) -> Encoder:
    """Build a registered encoder; ``torchvision:r3d_18`` passes the arch after the colon."""
    _load_families()
    family, _, variant = name.partition(":")
    factory = ENCODERS.get(family)
    if variant:
        options["variant"] = variant
    return factory(**options)


def encoder_names() -> list[str]:
    _load_families()
    return ENCODERS.names()


__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderIdentity",
    "create_encoder",
    "encoder_names",
    "register_encoder",
    "weights_digest",
]
