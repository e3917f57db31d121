"""The encoder contract and registry. One module per encoder family lives beside this file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from aamflow.schemas._registry import Registry

from ..preprocess import ClipTransform


@dataclass(frozen=True, kw_only=True)
class EncoderIdentity:
    """What a store records about the encoder that produced it."""

    name: str
    dim: int
    weights_digest: str
    clip_len: int
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "weights_digest": self.weights_digest,
            "clip_len": self.clip_len,
            "preprocessing": dict(self.preprocessing),
        }


class Encoder(Protocol):
    """A frozen clip encoder.

    ``preprocess`` turns decoded uint8 frames ``[T, H, W, 3]`` into one model input
    ``[3, T, S, S]`` (resize, crop, normalize as the encoder expects); it is ``transform``,
    whose two halves the extract stage runs apart: ``transform.crop_frames`` (uint8, frame
    by frame, picklable and cheap) in data loading workers, and ``transform.normalize`` on
    the encoder's device after clips are gathered from the shipped frames. ``encode`` maps a
    batch ``[B, 3, T, S, S]`` to pooled clip vectors ``[B, dim]`` in float32.

    An image model applied per frame may also offer ``encode_frames(frames [U, 3, S, S],
    gather [B, T]) -> [B, dim]``: the extract stage then hands it each distinct normalised
    frame once, with the frame rows of every clip, instead of the gathered clips.
    """

    identity: EncoderIdentity
    module: torch.nn.Module
    transform: ClipTransform

    def preprocess(self, frames: np.ndarray) -> torch.Tensor: ...

    def encode(self, batch: torch.Tensor) -> torch.Tensor: ...


# A factory takes keyword options (weights path, input size, ...) and returns an Encoder.
ENCODERS: Registry = Registry("encoder")
register_encoder = ENCODERS.register


def weights_digest(module: torch.nn.Module) -> str:
    """A sha256 over parameter names, shapes and bytes: identifies the weights, not the file."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        # raw bytes, so bf16/fp16 weights hash too (numpy has no bfloat16)
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()
