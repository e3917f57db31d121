"""Every registered AAM architecture: identity at init, rebuildable, and (except the paper's)
independent of the batch it is computed in, down to the bytes through ``apply_aam``."""

from __future__ import annotations

import json

import pytest
import torch

from aamflow.schemas.errors import ConfigError
from aamflow.stages.models.aam import AAM_ARCHS, apply_aam, build_aam, is_identity

DIM = 48
ARCHS = AAM_ARCHS.names()
BATCH_INDEPENDENT = [a for a in ARCHS if not build_aam(a, DIM).batch_dependent]


def _feats(n: int, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def _trained(arch: str, dim: int = DIM) -> torch.nn.Module:
    """An adapter whose weights are all non-zero, standing in for a trained one."""
    torch.manual_seed(1)
    module = build_aam(arch, dim)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_starts_as_exact_identity(arch):
    module = build_aam(arch, DIM)
    x = _feats(5)
    out = module(x)
    assert out.shape == x.shape
    assert torch.equal(out, x)
    assert is_identity(module)
    assert not is_identity(_trained(arch))


@pytest.mark.parametrize("arch", ARCHS)
def test_metadata_rebuilds_the_same_model(arch):
    module = _trained(arch)
    assert module.arch == arch and module.dim == DIM
    assert isinstance(module.batch_dependent, bool)
    hparams = json.loads(json.dumps(module.hparams))
    clone = build_aam(module.arch, module.dim, **hparams)
    clone.load_state_dict(module.state_dict())
    x = _feats(4)
    assert torch.equal(clone.eval()(x), module(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_away_from_identity(arch):
    """The zero-initialised output layers still receive gradient."""
    module = build_aam(arch, DIM)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    x = _feats(16)
    for _ in range(3):
        loss = (module(x) - 2 * x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not is_identity(module)


@pytest.mark.parametrize("arch", ARCHS)
def test_trains_under_autocast(arch):
    """train-adapter runs the AAM under bf16/fp16 autocast on CUDA; bf16 on CPU stands in."""
    module = _trained(arch).train()
    x = _feats(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    loss = (out.float() - x).pow(2).mean()
    loss.backward()
    assert out.shape == x.shape and torch.isfinite(loss)
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("arch", BATCH_INDEPENDENT)
def test_clip_output_does_not_depend_on_its_batch(arch):
    module = _trained(arch)
    x = _feats(256)
    with torch.no_grad():
        full = module(x)
        perm = torch.randperm(256, generator=torch.Generator().manual_seed(3))
        shuffled = module(x[perm])
        alone = torch.cat([module(x[i : i + 1]) for i in range(5)])
    # plain forward may pick other BLAS kernels per batch size: equal up to float32
    # rounding (1e-6 of the output scale); apply_aam below makes it exact
    tol = 1e-6 * full.abs().max()
    assert (shuffled - full[perm]).abs().max() <= tol
    assert (alone - full[:5]).abs().max() <= tol


@pytest.mark.parametrize("arch", ARCHS)
def test_apply_aam_bytes_do_not_depend_on_batch_size(arch):
    module = _trained(arch)
    x = _feats(300)
    ref = apply_aam(module, x, batch_size=256)
    assert ref.dtype == torch.float32
    for bs in (1, 7, 1000):
        assert torch.equal(apply_aam(module, x, batch_size=bs), ref), bs
    # a clip's bytes also ignore where a chunk of the store starts
    assert torch.equal(apply_aam(module, x[37:44], batch_size=7), ref[37:44])
    assert torch.equal(apply_aam(module, x[299:], batch_size=1), ref[299:])


def test_apply_aam_bytes_do_not_depend_on_thread_count():
    module = _trained("token_attention")
    x = _feats(300)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = apply_aam(module, x, batch_size=64)
        torch.set_num_threads(max(2, threads))
        many = apply_aam(module, x, batch_size=300)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


def test_paper_arch_is_batch_dependent():
    module = _trained("paper")
    assert module.batch_dependent
    x = _feats(64)
    with torch.no_grad():
        together = module(x)[0]
        other_company = module(torch.cat([x[:1], _feats(63, seed=9)]))[0]
        alone = module(x[:1])[0]
        per_clip = module.forward_per_clip(x)
    assert (together - other_company).abs().max() > 1e-3
    # forward on a batch of one is the per-clip evaluation apply_aam uses
    torch.testing.assert_close(alone, per_clip[0], atol=1e-5, rtol=1e-5)


def test_token_attention_accepts_a_dim_not_divisible_by_tokens():
    module = _trained("token_attention", dim=50)
    assert module(_feats(3, dim=50)).shape == (3, 50)


def test_unknown_names_fail_with_the_valid_ones():
    with pytest.raises(ConfigError, match="residual_mlp"):
        build_aam("transformer_xl", DIM)
    with pytest.raises(ConfigError, match="n_tokens"):
        build_aam("token_attention", DIM, n_token=4)
    with pytest.raises(ConfigError, match="divisible"):
        build_aam("paper", 50)
    with pytest.raises(ConfigError, match="features"):
        apply_aam(build_aam("residual_mlp", DIM), _feats(3, dim=10), batch_size=4)


@pytest.mark.parametrize(
    ("hparams", "fragment"),
    [
        ({"width": 10**7}, "must lie in"),
        ({"width": 60000, "n_tokens": 8}, "parameters, more than"),
        ({"width": "abc"}, "bad hparams"),
        ({"depth": 2.5}, "bad hparams"),
    ],
)
def test_huge_or_wrong_typed_hparams_are_refused_without_allocating(hparams, fragment) -> None:
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=fragment):
        build_aam("token_attention", 512, **hparams)
    assert time.perf_counter() - t0 < 5
