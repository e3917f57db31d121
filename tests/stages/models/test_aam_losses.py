"""The AAM objectives: NT-Xent as SimCLR defines it, the paired cross-covariance, and the sign
of the privacy term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aamflow.stages.models.losses import (
    LossWeights,
    latent_consistency,
    nt_xent,
    paired_cross_covariance,
    total_objective,
)


def _views(n: int = 6, d: int = 12, noise: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    return a, a + noise * torch.randn(n, d, generator=g)


def _nt_xent_loop(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    """SimCLR's definition written out anchor by anchor."""
    z = torch.cat([a, b]).double()
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [F.cosine_similarity(z[i], z[k], dim=0).item() / t for k in range(n2)]
        denom = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        total += -math.log(math.exp(sims[j]) / denom)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_the_definition(temperature):
    a, b = _views()
    got = nt_xent(a, b, temperature)
    assert got.shape == ()
    assert got.item() == pytest.approx(_nt_xent_loop(a, b, temperature), rel=1e-5)


def test_nt_xent_is_symmetric_and_scale_free():
    a, b = _views()
    assert nt_xent(a, b).item() == pytest.approx(nt_xent(b, a).item(), rel=1e-6)
    assert nt_xent(3 * a, b).item() == pytest.approx(nt_xent(a, b).item(), rel=1e-5)


def test_nt_xent_is_float32_and_differentiable_under_autocast():
    a, b = _views()
    a.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(a @ torch.eye(12), b)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_privacy_term_sign_convention():
    """Static views of one video drifting apart raise L_B and lower the total objective."""
    a, _ = _views()
    l_lc, l_t = torch.tensor(0.01), torch.tensor(1.2)
    l_b = [nt_xent(*_views(noise=s)) for s in (0.1, 1.0, 5.0)]
    assert l_b[0] < l_b[1] < l_b[2]
    totals = [total_objective(l_lc, l_t, lb) for lb in l_b]
    assert totals[0] > totals[1] > totals[2]


def test_total_objective_weights():
    w = LossWeights()
    assert (w.lc, w.t, w.b) == (100.0, 1.0, 1.0)
    assert LossWeights.from_dict(w.to_dict()) == w
    got = total_objective(torch.tensor(0.5), torch.tensor(2.0), torch.tensor(3.0), w_lc=10.0)
    assert got.item() == pytest.approx(10 * 0.5 + 2.0 - 3.0)


def test_latent_consistency_is_mse():
    z = torch.randn(4, 8)
    assert latent_consistency(z, z).item() == 0.0
    assert latent_consistency(z + 2, z).item() == pytest.approx(4.0)


def _static_pairs(n: int, d: int, appearance: float, pose: float, seed: int = 0):
    """Two static clips per video: a shared appearance vector plus independent pose."""
    g = torch.Generator().manual_seed(seed)
    video = appearance * torch.randn(n, d, generator=g)
    return video + pose * torch.randn(n, d, generator=g), video + pose * torch.randn(
        n, d, generator=g
    )


def test_paired_cross_covariance_is_the_variance_a_videos_clips_share() -> None:
    a, b = _static_pairs(4096, 16, appearance=2.0, pose=1.0)
    assert float(paired_cross_covariance(a, b)) == pytest.approx(4.0, rel=0.05)
    # nothing shared (appearance removed): about zero, whatever the pose
    a0, b0 = _static_pairs(4096, 16, appearance=0.0, pose=3.0)
    assert abs(float(paired_cross_covariance(a0, b0))) < 0.1


def test_amplifying_pose_wins_nt_xent_but_not_the_cross_covariance() -> None:
    """Why the demo uses ``xcov``: scaling up what differs within a video pushes NT-Xent
    toward its maximum ln(2B - 1) with the appearance intact; the cross-covariance of the
    same clips does not move, so only removing appearance lowers it."""
    n = 256
    a, b = _static_pairs(n, 32, appearance=1.0, pose=0.3)
    g = torch.Generator().manual_seed(1)
    extra_a, extra_b = (3.0 * torch.randn(n, 32, generator=g) for _ in range(2))
    assert float(nt_xent(a + extra_a, b + extra_b)) > float(nt_xent(a, b)) + 2.0
    assert float(nt_xent(a + extra_a, b + extra_b)) > 0.9 * math.log(2 * n - 1)
    before = float(paired_cross_covariance(a, b))
    after = float(paired_cross_covariance(a + extra_a, b + extra_b))
    assert after == pytest.approx(before, abs=0.15)


def test_paired_cross_covariance_is_float32_and_differentiable_under_autocast() -> None:
    a, b = _static_pairs(8, 4, appearance=1.0, pose=1.0)
    a.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = paired_cross_covariance(a.bfloat16(), b.bfloat16())
    assert value.dtype == torch.float32 and value.dim() == 0
    value.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
