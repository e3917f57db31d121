"""The label-free erasers: the static one (per-video mean static latents) and the video one
(between-video vs within-video scatter, an oblique projection); both exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aamflow.schemas.errors import ConfigError
from aamflow.stages.models.aam import apply_aam, build_aam, is_identity
from aamflow.stages.models.eraser import (
    fit_static_eraser,
    nuisance_scatter,
    video_eraser_directions,
    video_means,
)


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


# ----------------------------------------------------------------------- the video eraser


def entangled(videos: int = 120, clips: int = 8, seed: int = 0):
    """Clips ``x = A a_v + M m_{v,t} + C c_v + noise`` in 10 dims: a 2-d appearance ``a``
    constant within a video, a 3-d motion ``m`` that varies over time, and a 1-d action
    ``c`` (the video's class, 3 classes). ``A`` is deliberately *not* orthogonal to ``M``:
    appearance and motion share directions, as in a learned encoder."""
    rng = np.random.default_rng(seed)
    dim = 10
    a_dirs = rng.standard_normal((2, dim))
    m_dirs = rng.standard_normal((3, dim))
    a_dirs[0] += 1.5 * m_dirs[0]  # appearance leans on a motion direction
    c_dir = rng.standard_normal(dim)
    label = np.arange(videos) % 3
    appearance = 2.0 * rng.standard_normal((videos, 2))
    owner = np.repeat(np.arange(videos), clips)
    motion = rng.standard_normal((len(owner), 3))
    noise = 0.01 * rng.standard_normal((len(owner), dim))
    x = appearance[owner] @ a_dirs + motion @ m_dirs + (label[owner] - 1.0)[:, None] * c_dir
    static_owner = np.repeat(np.arange(videos), 4)
    static = appearance[static_owner] @ a_dirs + 0.01 * rng.standard_normal(
        (len(static_owner), dim)
    )
    return {
        "clips": (x + noise).astype(np.float32),
        "owner": owner,
        "static": static.astype(np.float32),
        "static_owner": static_owner,
        "label": label,
        "appearance": appearance,
        "motion": motion,
        "a_dirs": a_dirs,
        "m_dirs": m_dirs,
    }


def _fit(d):
    rows = np.arange(len(d["label"]))
    scatter = nuisance_scatter(
        d["clips"], d["owner"], d["static"], d["static_owner"], rows, d["label"], block=64
    )
    return video_eraser_directions(scatter)


def _r2(target: np.ndarray, x: np.ndarray) -> float:
    """Share of ``target``'s variance a least-squares linear read-out of ``x`` explains."""
    x1 = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(x1, target, rcond=None)
    res = target - x1 @ coef
    return float(1 - res.var(0).sum() / target.var(0).sum())


def test_the_video_eraser_removes_appearance_and_keeps_motion_it_shares_directions_with() -> None:
    d = entangled()
    directions = _fit(d)
    assert directions.ratio[1] > 100 * directions.ratio[2]  # two nuisance directions stand out
    erased = directions.apply(d["clips"], 2)
    appearance = d["appearance"][d["owner"]]
    # ~0.01 is what 11 regressors fit by chance on 960 rows
    assert _r2(appearance, d["clips"]) > 0.99 and _r2(appearance, erased) < 0.03
    assert _r2(d["motion"], erased) > 0.99
    # the oblique projection leaves the motion it shares directions with as it was; an
    # orthogonal projection of the appearance span would bend it
    motion = d["motion"] @ d["m_dirs"] + directions.mean
    kept = directions.apply(motion, 2)
    q, _ = np.linalg.qr(d["a_dirs"].T)
    bent = motion - (motion - directions.mean) @ q @ q.T
    change = lambda y: np.linalg.norm(y - motion) / np.linalg.norm(motion - directions.mean)  # noqa: E731
    assert change(kept) < 0.02 and change(bent) > 0.2


def test_a_video_eraser_is_exact_and_rebuilds_from_the_adapter_hparams() -> None:
    d = entangled()
    aam = build_aam("token_attention", 10, erase_rank=2, eraser="video")
    assert is_identity(aam) and aam.hparams == {
        **aam.inner.hparams,
        "erase_rank": 2,
        "eraser": "video",
    }
    aam.eraser.set(*_fit(d).eraser(2))
    x = torch.from_numpy(d["clips"])
    # the eraser runs first and is what latent consistency compares to
    assert torch.allclose(aam(x), aam.inner(aam.eraser(x))) and torch.equal(
        aam.target(x), aam.eraser(x)
    )
    again = build_aam(aam.arch, aam.dim, **aam.hparams)
    again.load_state_dict(aam.state_dict())
    assert torch.equal(apply_aam(aam, x, 64), apply_aam(again, x, 1000))
    twice = aam.eraser(aam.eraser(x))  # a projection: erasing again changes nothing
    assert torch.allclose(twice, aam.eraser(x), atol=1e-4)


def test_a_pinned_video_eraser_keeps_the_trained_adapters_output_on_the_kept_subspace() -> None:
    d = entangled()
    pinned = build_aam("residual_mlp", 10, erase_rank=2, eraser="video", pin_output=True)
    assert pinned.hparams["pin_output"] is True
    functionals = _fit(d).eraser(2)
    pinned.eraser.set(*functionals)
    with torch.no_grad():  # a trained adapter: any weights, the output may drift anywhere
        for p in pinned.inner.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.from_numpy(d["clips"])
    basis = pinned.eraser.basis  # the removed functionals W: (y - m) W is what was erased
    coords = lambda y: (y - pinned.eraser.mean) @ basis  # noqa: E731
    assert coords(pinned(x)).abs().max() < 1e-4  # erased coordinates: exactly the mean's
    loose = build_aam("residual_mlp", 10, erase_rank=2, eraser="video")  # as saved before
    loose.load_state_dict(pinned.state_dict())
    assert "pin_output" not in loose.hparams and coords(loose(x)).abs().max() > 1e-2
    again = build_aam(pinned.arch, pinned.dim, **pinned.hparams)
    again.load_state_dict(pinned.state_dict())
    assert torch.equal(apply_aam(pinned, x, 64), apply_aam(again, x, 1000))


def test_checkpoints_of_the_static_recipe_still_load() -> None:
    """They were saved before ``eraser.span`` existed: their eraser is orthogonal."""
    static, owner = planted()
    aam = build_aam("residual_mlp", 12, erase_rank=3)
    aam.eraser.set(*fit_static_eraser(video_means(static, owner, np.unique(owner)), 3))
    old = {k: v for k, v in aam.state_dict().items() if not k.endswith("eraser.span")}
    hparams = {k: v for k, v in aam.hparams.items() if k != "eraser"}
    again = build_aam("residual_mlp", 12, **hparams)
    again.load_state_dict(old)
    x = torch.from_numpy(static[:50])
    assert torch.equal(again(x), aam(x))


def test_nuisance_scatter_reads_in_blocks() -> None:
    d = entangled(videos=30)
    rows = np.arange(30)
    args = (d["clips"], d["owner"], d["static"], d["static_owner"], rows, d["label"])
    a, b = nuisance_scatter(*args, block=7), nuisance_scatter(*args, block=100_000)
    assert np.allclose(a.between, b.between) and np.allclose(a.keep, b.keep)
    assert a.videos == 30 and a.clips == len(d["owner"])
