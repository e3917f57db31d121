"""The three AAM training objectives: privacy L_B (maximised), latent consistency L_LC (MSE)
and their combination with the task loss L_T.

L_B compares the AAM outputs of two static clips of each video, in one of two forms
(``PRIVACY_LOSSES``): the paper's NT-Xent, or minus their paired cross-covariance, which a
per-clip attacker cannot be fooled by (see ``paired_cross_covariance``).

All functions return 0-d tensors and never synchronise with the host, so they can run
inside a CUDA training step; similarities are computed in float32 even under autocast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

PRIVACY_LOSSES = ("ntxent", "xcov")


@dataclass(frozen=True, kw_only=True)
class LossWeights:
    """Weights of L = lc * L_LC + t * L_T - b * L_B (the paper's 100, 1, 1)."""

    lc: float = 100.0
    t: float = 1.0
    b: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossWeights:
        return cls(**{k: float(v) for k, v in data.items()})


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """SimCLR NT-Xent between two views.

    Parameters
    ----------
    a, b
        ``[B, D]`` embeddings; ``(a[i], b[i])`` is the positive pair and the other ``2B - 2``
        samples of the joint batch are the negatives.
    temperature
        Softmax temperature applied to cosine similarities.

    Returns
    -------
    Tensor
        The cross-entropy averaged over all ``2B`` anchors (0-d, float32).
    """
    n = a.shape[0]
    with torch.autocast(a.device.type, enabled=False):
        z = F.normalize(torch.cat([a, b]).float(), dim=1)
        sim = z @ z.T / temperature
        # an anchor is never its own negative
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])
        return F.cross_entropy(sim, targets)


def paired_cross_covariance(a: Tensor, b: Tensor) -> Tensor:
    """Covariance shared by paired rows: ``mean_i <a_i - m, b_i - m> / D``, ``m`` the mean of
    all ``2B`` rows (0-d, float32).

    For two static clips of each video, its expectation is the between-video variance of
    the per-video mean output: >= 0, and 0 only when the output's mean carries nothing
    specific to the video (its appearance). Being unnormalised, it cannot be lowered by
    amplifying what differs *within* a video (pose), which is how an AAM wins NT-Xent
    without removing appearance.
    """
    with torch.autocast(a.device.type, enabled=False):
        a, b = a.float(), b.float()
        m = torch.cat([a, b]).mean(0)
        return ((a - m) * (b - m)).sum(1).mean() / a.shape[1]


def latent_consistency(out: Tensor, z: Tensor) -> Tensor:
    """L_LC: mean squared error between the AAM output and its input latent."""
    return F.mse_loss(out.float(), z.float())


def total_objective(
    l_lc: Tensor,
    l_t: Tensor,
    l_b: Tensor,
    w_lc: float = 100.0,
    w_t: float = 1.0,
    w_b: float = 1.0,
) -> Tensor:
    """The quantity to minimise: ``w_lc * l_lc + w_t * l_t - w_b * l_b`` (L_B is maximised)."""
    return w_lc * l_lc + w_t * l_t - w_b * l_b
