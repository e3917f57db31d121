"""Motion summaries shared by the encoders that measure flow themselves (``builtin`` on
pixels, the ``onnx`` cell flow on a learned map): horizontal bands of a standing actor,
signed square roots and the magnitudes of low temporal frequencies."""

from __future__ import annotations

import math

import numpy as np
import torch

BANDS = 4  # horizontal bands: head, shoulders, torso, legs of a standing actor
FREQS = (1, 2, 3)  # temporal frequencies (cycles per clip) kept from motion signals


def band_slices(n: int) -> list[slice]:
    """The ``BANDS`` horizontal bands of ``n`` rows."""
    edges = np.linspace(0, n, BANDS + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().sqrt()


def dft(s: torch.Tensor) -> torch.Tensor:
    """Magnitudes of the ``FREQS`` temporal frequencies of ``s [B, L, C]`` -> ``[B, F, C]``."""
    n = s.shape[1]
    t = torch.arange(n, dtype=s.dtype, device=s.device)[:, None]
    freqs = torch.tensor(FREQS, dtype=s.dtype, device=s.device)
    ang = (2 * math.pi / max(n, 1)) * t * freqs  # [L, F]
    x = s.unsqueeze(2)  # [B, L, 1, C]
    re = (x * torch.cos(ang)[:, :, None]).mean(1)
    im = (x * torch.sin(ang)[:, :, None]).mean(1)
    return torch.hypot(re, im)
