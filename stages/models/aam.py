"""Anonymizing Adapter Module (AAM) architectures.

An AAM maps pooled clip vectors ``[B, D]`` to anonymized vectors ``[B, D]``. Every
architecture is residual and starts as the exact identity (the last layer of its residual
branch is zero), so training begins from the raw features and ``is_identity`` can tell an
untrained adapter apart. Each module carries ``arch``, ``dim``, ``hparams`` (JSON-ready;
``build_aam(m.arch, m.dim, **m.hparams)`` rebuilds it) and ``batch_dependent``.

``apply_aam`` is the inference entry point for store rewriting: its output bytes do not
depend on the batch size it is called with.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aamflow.schemas._registry import Registry
from aamflow.schemas.errors import ConfigError

# Rows per kernel call in apply_aam. GEMM libraries pick different kernels for small row
# counts (e.g. gemv for 1 row), so a fixed, zero-padded shape is what makes the bytes
# independent of the caller's batch size. Changing it may change output bytes: keep it
# constant. On CUDA a larger block keeps the GPU from idling between small launches.
MICRO_BATCH = 256
MICRO_BATCH_CUDA = 8192

# CPU BLAS may split a GEMM's reduction across threads (seen for large K, small N), so bytes
# would follow the thread count; apply_aam computes single-threaded, under a lock because
# the thread count is process-wide.
_THREADS_LOCK = threading.Lock()


class AAM(Protocol):
    """What every AAM module exposes (checked by the registry-wide tests)."""

    arch: str
    dim: int
    hparams: dict[str, Any]
    batch_dependent: bool

    def __call__(self, x: Tensor) -> Tensor: ...


AAM_ARCHS: Registry[Callable[..., nn.Module]] = Registry("AAM architecture")
register_aam = AAM_ARCHS.register


# --- blocks -----------------------------------------------------------------------------


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class _SelfAttention(nn.Module):
    """Multi-head self-attention over the token axis of ``[B, N, W]`` (never across B)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        b, n, w = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))


class _TokenBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _Mlp(width, int(width * mlp_ratio), dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- models -----------------------------------------------------------------------------


class TokenAttentionAAM(nn.Module):
    """Per-clip transformer: the D vector is cut into ``n_tokens`` chunks that attend to each
    other; attention never crosses clips, so each output row depends on its input row only.

    The input is zero-padded to a multiple of ``n_tokens``; chunks share one projection to
    ``width`` (as ViT patches do) plus learned position embeddings. The residual branch
    ends in a zero-initialised projection back to D.
    """

    batch_dependent = False

    def __init__(
        self,
        dim: int,
        *,
        n_tokens: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.arch = "token_attention"
        self.dim = dim
        self.hparams = {
            "n_tokens": n_tokens,
            "width": width,
            "depth": depth,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "dropout": dropout,
        }
        self.n_tokens = n_tokens
        self.token_dim = math.ceil(dim / n_tokens)
        self.embed = nn.Linear(self.token_dim, width)
        self.pos = nn.Parameter(torch.zeros(n_tokens, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            _TokenBlock(width, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(n_tokens * width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        pad = self.n_tokens * self.token_dim - self.dim
        tokens = F.pad(x, (0, pad)).view(b, self.n_tokens, self.token_dim)
        h = self.embed(tokens) + self.pos
        for block in self.blocks:
            h = block(h)
        return x + self.out(self.norm(h).flatten(1))


class ResidualMlpAAM(nn.Module):
    """``depth`` blocks of x + MLP(LayerNorm(x)); each MLP's last linear starts at zero."""

    batch_dependent = False

    def __init__(self, dim: int, *, depth: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.arch = "residual_mlp"
        self.dim = dim
        self.hparams = {"depth": depth, "hidden": hidden, "dropout": dropout}
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.mlps = nn.ModuleList(_Mlp(dim, hidden, dropout) for _ in range(depth))
        for mlp in self.mlps:
            nn.init.zeros_(mlp.fc2.weight)
            nn.init.zeros_(mlp.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        for norm, mlp in zip(self.norms, self.mlps, strict=True):
            x = x + mlp(norm(x))
        return x


class PaperAAM(nn.Module):
    """The official AAM: residual ``nn.MultiheadAttention`` layers on 2-D input ``[B, D]``.

    BATCH-DEPENDENT. PyTorch reads 2-D input as one unbatched sequence, so attention runs
    across the mini-batch: a clip's output depends on which other clips share its batch.
    It exists only to reproduce the paper. ``forward`` on a batch of one clip is the per-clip
    evaluation (attention over a single key is the value path: x + out(V x)), and
    ``forward_per_clip`` computes exactly that for many clips at once, independently of the
    batch; ``apply_aam`` uses it. Each layer's ``out_proj`` starts at zero (identity).
    """

    batch_dependent = True

    def __init__(self, dim: int, *, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.arch = "paper"
        self.dim = dim
        self.hparams = {"layers": layers, "heads": heads, "dropout": dropout}
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(dim, heads, dropout=dropout) for _ in range(layers)
        )
        for attn in self.attns:
            nn.init.zeros_(attn.out_proj.weight)
            nn.init.zeros_(attn.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        for attn in self.attns:
            x = attn(x, x, x, need_weights=False)[0] + x
        return x

    def forward_per_clip(self, x: Tensor) -> Tensor:
        """Each row as if it were its own batch of one: softmax over one key is 1."""
        d = self.dim
        for attn in self.attns:
            v = F.linear(x, attn.in_proj_weight[2 * d :], attn.in_proj_bias[2 * d :])
            x = attn.out_proj(v) + x
        return x


# --- config table -----------------------------------------------------------------------


@register_aam("token_attention")
def token_attention(
    dim: int,
    *,
    n_tokens: int = 8,
    width: int = 128,
    depth: int = 2,
    heads: int = 8,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
) -> TokenAttentionAAM:
    """Batch-independent per-clip token transformer (the default candidate)."""
    if width % heads:
        raise ConfigError(f"token_attention: width={width} must be divisible by heads={heads}")
    if not 1 <= n_tokens <= dim:
        raise ConfigError(f"token_attention: n_tokens={n_tokens} must be in [1, dim={dim}]")
    return TokenAttentionAAM(
        dim,
        n_tokens=n_tokens,
        width=width,
        depth=depth,
        heads=heads,
        mlp_ratio=float(mlp_ratio),
        dropout=float(dropout),
    )


@register_aam("residual_mlp")
def residual_mlp(
    dim: int, *, depth: int = 2, hidden: int | None = None, dropout: float = 0.0
) -> ResidualMlpAAM:
    """Batch-independent residual MLP; ``hidden`` defaults to ``dim``."""
    return ResidualMlpAAM(dim, depth=depth, hidden=hidden or dim, dropout=float(dropout))


@register_aam("paper")
def paper(dim: int, *, layers: int = 3, heads: int = 8, dropout: float = 0.0) -> PaperAAM:
    """The paper's batch-dependent AAM, for reproduction only."""
    if dim % heads:
        raise ConfigError(f"paper AAM: dim={dim} must be divisible by heads={heads}")
    return PaperAAM(dim, layers=layers, heads=heads, dropout=float(dropout))


# --- public functions -------------------------------------------------------------------


MAX_AAM_PARAMS = 1 << 28  # 1 GiB of float32 weights: far beyond any adapter of a D <= 4096 latent


def build_aam(
    arch: str,
    dim: int,
    *,
    erase_rank: int = 0,
    eraser: str = "static",
    pin_output: bool = False,
    **hparams: Any,
) -> nn.Module:
    """Build an AAM by registered name.

    Parameters
    ----------
    arch
        A name in ``AAM_ARCHS`` (``token_attention``, ``residual_mlp``, ``paper``).
    dim
        Input and output feature dimension D.
    erase_rank
        When > 0, the AAM is composed with a fitted linear eraser of that rank
        (``stages.models.eraser``; unfitted it is the identity).
    eraser
        Its kind: ``video`` (erases the input) or ``static`` (erases the output; the
        default, so that checkpoints written before the kind was recorded rebuild as before).
    pin_output
        With a ``video`` eraser, erase the AAM's output too, so it stays on the kept
        subspace (``ErasedAAM``); off by default, as checkpoints written before it were.
    **hparams
        Architecture hyperparameters; unknown names raise ``ConfigError``.

    Returns
    -------
    nn.Module
        An identity-initialised module with ``arch``, ``dim``, ``hparams`` and
        ``batch_dependent`` attributes.
    """
    try:
        factory = AAM_ARCHS.get(arch)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    params = inspect.signature(factory).parameters
    valid = [n for n in params if n != "dim"]
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ConfigError(f"AAM {arch!r}: unknown hparams {unknown}; valid: {', '.join(valid)}")
    if dim < 1:
        raise ConfigError(f"AAM {arch!r}: dim must be positive, got {dim}")
    if not isinstance(erase_rank, int) or not 0 <= erase_rank < dim:
        raise ConfigError(f"--erase-rank {erase_rank!r}: must be an integer in [0, {dim})")
    from aamflow.stages.models.eraser import ERASERS, ErasedAAM

    if eraser not in ERASERS[1:]:
        raise ConfigError(f"AAM eraser {eraser!r}: valid: {', '.join(ERASERS[1:])}")
    big = {k: v for k, v in hparams.items() if isinstance(v, int) and not 0 <= v <= 1 << 16}
    if big:
        raise ConfigError(f"AAM {arch!r}: hparams {big} must lie in [0, 65536]")
    # built on the meta device first (no memory), so a wrong-typed or huge hyperparameter
    # (an adapter.json with width 10**7) is one ConfigError, not a 480 GB allocation
    try:
        with torch.device("meta"):
            size = sum(t.numel() for t in factory(dim, **hparams).state_dict().values())
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(f"AAM {arch!r}: bad hparams {hparams} ({first})") from None
    if size > MAX_AAM_PARAMS:
        raise ConfigError(
            f"AAM {arch!r}: hparams {hparams} give {size:,} parameters, more than the "
            f"{MAX_AAM_PARAMS:,} an adapter may have"
        )
    module = factory(dim, **hparams)
    if erase_rank:
        module = ErasedAAM(module, erase_rank, eraser, pin_output=bool(pin_output))
    return module


def is_identity(module: nn.Module) -> bool:
    """True when the adapter still maps inputs to themselves exactly (an untrained AAM).

    Checked on a fixed random probe batch in eval mode and float32; a zero residual
    branch gives ``x + 0 == x`` bit for bit, any trained branch does not.
    """
    param = next(module.parameters())
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(8, module.dim, generator=gen).to(param.device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), torch.autocast(param.device.type, enabled=False):
            return bool(torch.equal(module(probe), probe))
    finally:
        module.train(was_training)


@contextmanager
def _fixed_reduction_order(device: torch.device) -> Iterator[None]:
    if device.type != "cpu":
        yield
        return
    with _THREADS_LOCK:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def apply_aam(
    module: nn.Module, x: Tensor, batch_size: int, *, micro_batch: int | None = None
) -> Tensor:
    """Anonymize clip vectors with output bytes independent of ``batch_size``.

    Parameters
    ----------
    module
        An AAM from ``build_aam``. Batch-dependent archs (``paper``) are applied one clip
        at a time (``forward_per_clip``), which is deterministic but is *not* what the
        paper's batched forward computes.
    x
        ``[N, D]`` clip vectors on any device; the result comes back on ``x``'s device.
    batch_size
        Rows moved to the module's device per step (memory bound only).
    micro_batch
        Rows per kernel call, zero-padded at the tail; default ``MICRO_BATCH`` on CPU,
        ``MICRO_BATCH_CUDA`` on CUDA. Output bytes are identical for any ``batch_size``,
        chunking of ``x`` and thread count given the same ``micro_batch``, device type, CPU
        instruction set or GPU model and library versions; keep the default.

    Returns
    -------
    Tensor
        ``[N, D]`` float32, computed in float32 without autocast, in eval mode. On CPU the
        computation runs on one intra-op thread (serialised across Python threads); run
        parallel workers as processes for throughput.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if x.ndim != 2 or x.shape[1] != module.dim:
        raise ConfigError(f"expected features [N, {module.dim}], got {list(x.shape)}")
    fn = module.forward_per_clip if module.batch_dependent else module
    device = next(module.parameters()).device
    if micro_batch is None:
        micro_batch = MICRO_BATCH_CUDA if device.type == "cuda" else MICRO_BATCH
    n = x.shape[0]
    out = torch.empty(n, module.dim, dtype=torch.float32, device=x.device)
    step = math.ceil(batch_size / micro_batch) * micro_batch
    was_training = module.training
    module.eval()
    try:
        with (
            _fixed_reduction_order(device),
            torch.inference_mode(),
            torch.autocast(device.type, enabled=False),
        ):
            for start in range(0, n, step):
                chunk = x[start : start + step].to(device=device, dtype=torch.float32)
                res = torch.empty_like(chunk)
                for s in range(0, chunk.shape[0], micro_batch):
                    part = chunk[s : s + micro_batch]
                    k = part.shape[0]
                    if k < micro_batch:
                        part = F.pad(part, (0, 0, 0, micro_batch - k))
                    res[s : s + k] = fn(part)[:k]
                # one device-to-host copy per chunk, not per micro-batch
                out[start : start + res.shape[0]] = res.to(out.device)
    finally:
        module.train(was_training)
    return out
