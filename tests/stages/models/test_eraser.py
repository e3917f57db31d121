"""The static-appearance eraser: label-free, fitted on per-video mean static latents, exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aamflow.schemas.errors import ConfigError
from aamflow.stages.models.aam import apply_aam, build_aam, is_identity
from aamflow.stages.models.eraser import fit_static_eraser, video_means


def planted(videos: int = 200, per_video: int = 5, dim: int = 12, rank: int = 3, seed: int = 0):
    """Static clips whose video-specific part lies in the first ``rank`` axes (appearance);
    the remaining axes vary only within a video (pose)."""
    rng = np.random.default_rng(seed)
    appearance = np.zeros((videos, dim))
    appearance[:, :rank] = 3.0 * rng.standard_normal((videos, rank))
    owner = np.repeat(np.arange(videos), per_video)
    pose = np.zeros((len(owner), dim))
    pose[:, rank:] = rng.standard_normal((len(owner), dim - rank))
    return (appearance[owner] + pose).astype(np.float32), owner


def test_an_unfitted_eraser_leaves_the_adapter_the_identity() -> None:
    aam = build_aam("token_attention", 16, erase_rank=4)
    assert is_identity(aam) and aam.hparams["erase_rank"] == 4


def test_the_fitted_eraser_removes_exactly_what_a_videos_static_clips_share() -> None:
    static, owner = planted()
    rows = np.unique(owner)
    means = video_means(static, owner, rows)
    mean, basis = fit_static_eraser(means, 3)
    assert np.allclose(basis.T @ basis, np.eye(3), atol=1e-5)
    aam = build_aam("residual_mlp", 12, erase_rank=3)
    aam.eraser.set(mean, basis)
    out = aam(torch.from_numpy(static)).detach().numpy()
    # the appearance axes carry no video-specific mean any more (3.0 before) ...
    left = video_means(out, owner, rows)
    assert means[:, :3].std(0).min() > 2.5 and left[:, :3].std(0).max() < 0.05
    # ... while the within-video (pose) axes pass almost unchanged
    assert np.abs(out[:, 3:] - static[:, 3:]).mean() < 0.05


def test_video_means_reads_in_blocks_and_ignores_other_videos() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    owner = np.array([5, 5, 7, 7, 7, 9, 9, 5, 8, 8])
    got = video_means(x, owner, np.array([7, 5]), block=3)
    assert np.allclose(got[0], x[2:5].mean(0)) and np.allclose(got[1], x[[0, 1, 7]].mean(0))


def test_erase_rank_round_trips_through_the_adapter_hparams() -> None:
    static, owner = planted()
    aam = build_aam("token_attention", 12, erase_rank=3)
    aam.eraser.set(*fit_static_eraser(video_means(static, owner, np.unique(owner)), 3))
    again = build_aam(aam.arch, aam.dim, **aam.hparams)
    again.load_state_dict(aam.state_dict())
    x = torch.from_numpy(static[:300])
    a, b = apply_aam(aam, x, batch_size=64), apply_aam(again, x, batch_size=300)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_directions_the_videos_do_not_span_are_left_alone() -> None:
    static, owner = planted(videos=4)
    mean, basis = fit_static_eraser(video_means(static, owner, np.unique(owner)), 6)
    # 4 videos span 3 directions around their mean: the other 3 columns erase nothing
    assert np.allclose(basis[:, :3].T @ basis[:, :3], np.eye(3), atol=1e-5)
    assert not basis[:, 3:].any()


@pytest.mark.parametrize("rank", [-1, 12, 2.5])
def test_a_bad_erase_rank_is_refused(rank) -> None:
    with pytest.raises(ConfigError, match="--erase-rank"):
        build_aam("residual_mlp", 12, erase_rank=rank)
