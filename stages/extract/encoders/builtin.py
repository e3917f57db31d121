"""The ``builtin`` encoder: a fixed, training-free spatio-temporal filter bank.

It downloads nothing and runs fast on CPU, yet its features carry what the privacy
benchmark needs:

- *appearance*: soft colour histograms over the frame and four horizontal bands, a coarse
  colour layout, edge and stripe texture, and saliency and colour on grids aligned to the
  most salient blob (the actor), so body shape is seen wherever the actor stands. Pixels
  count by how much they stand out from their row (backgrounds are row-wise smooth);
- *motion*: per band, Lucas-Kanade flow, signed motion energy and temporal-difference
  energy at two lags, summarised by mean, magnitude and low temporal frequencies.

Each feature group is brought to a similar scale by fixed constants, then a fixed seeded
random residual MLP block (linear map plus GELU MLP, then LayerNorm) mixes all groups into
every output dimension, so that appearance and motion are entangled as in a learned
encoder's output. A static clip (one frame tiled) has zero motion but its full appearance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from ._base import EncoderIdentity, register_encoder, weights_digest
from ._signals import BANDS as _BANDS
from ._signals import FREQS as _FREQS
from ._signals import band_slices as _band_slices
from ._signals import dft as _dft
from ._signals import signed_sqrt as _signed_sqrt

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
# feature group -> (offset, spread) applied before mixing
_GROUPS = {
    "hist": (0.1, 0.14),
    "layout": (0.0, 0.25),
    "texture": (0.045, 0.065),
    "shape": (-0.36, 0.7),
    "colour": (-0.06, 0.33),
    "motion": (0.02, 0.09),
}
_HIDDEN = 512  # width of the mixing MLP
_SALIENT = (0.25, 0.35)  # row deviation (summed over RGB) where saliency starts, and its ramp
_HIST_SIZE = 28  # side of the frame the colour histograms are taken on
_MOTION_SIZE = 56  # side of the frame motion is measured on
_SHAPE_GRID = (12, 6)  # rows x columns of the actor-aligned saliency (shape) grid
_COLOR_GRID = (8, 4)  # rows x columns of the actor-aligned colour grid


class BuiltinFeatures(nn.Module):
    """Clip ``[B, 3, T, S, S]`` (normalised RGB) -> ``[B, dim]`` features; no trainable
    parameters, only fixed seeded buffers."""

    def __init__(self, *, dim: int = 512, colors: int = 32, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1, 1))
        self.register_buffer("palette", torch.rand(colors, 3, generator=g))
        sizes = self._group_sizes(colors)
        self.raw_dim = sum(sizes.values())
        ends = np.cumsum([0, *sizes.values()]).tolist()
        self._slices = {k: slice(a, b) for k, a, b in zip(sizes, ends[:-1], ends[1:], strict=True)}
        # (x - offset) / spread per feature group, so each group reaches the mix at a
        # similar scale; constants were set once from unlabelled demo clips
        self.register_buffer("offset", _per_group(sizes, {k: v[0] for k, v in _GROUPS.items()}))
        self.register_buffer("spread", _per_group(sizes, {k: v[1] for k, v in _GROUPS.items()}))
        # a fixed random residual MLP block mixes every group into every output dimension
        r = self.raw_dim
        self.register_buffer("proj", torch.randn(r, dim, generator=g) / math.sqrt(r))
        self.register_buffer("w_in", torch.randn(r, _HIDDEN, generator=g) / math.sqrt(r))
        self.register_buffer("b_in", 0.1 * torch.randn(_HIDDEN, generator=g))
        self.register_buffer("w_out", torch.randn(_HIDDEN, dim, generator=g) / math.sqrt(_HIDDEN))

    @staticmethod
    def _group_sizes(colors: int) -> dict[str, int]:
        """Feature groups in the order ``raw`` concatenates them."""
        return {
            "hist": (1 + _BANDS) * colors,
            "layout": 3 * 4,
            "texture": (1 + _BANDS) * 3,
            "shape": _SHAPE_GRID[0] * _SHAPE_GRID[1],
            "colour": 3 * _COLOR_GRID[0] * _COLOR_GRID[1],
            "motion": (1 + _BANDS) * (4 * (2 + len(_FREQS)) + (1 + len(_FREQS)) + 1),
        }

    def group_slices(self) -> dict[str, slice]:
        """Where each feature group sits in :meth:`raw` (hist, layout, texture, shape,
        colour, motion)."""
        return dict(self._slices)

    # -------------------------------------------------------------- appearance

    def _appearance(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb ``[N, 3, S, S]`` in [0, 1]: one frame per row -> ``[N, appearance dims]``."""
        row_dev = (rgb - rgb.mean(-1, keepdim=True)).abs().sum(1)
        weight = ((row_dev - _SALIENT[0]) / _SALIENT[1]).clamp(0, 1)
        aligned = _aligned_grid(rgb, weight)
        texture = _texture(rgb.mean(1), weight)
        small = F.adaptive_avg_pool2d(rgb, _HIST_SIZE)
        w_small = F.adaptive_avg_pool2d(weight.unsqueeze(1), _HIST_SIZE).flatten(1)  # [N, P]
        pix = small.flatten(2).unsqueeze(-1)  # [N, 3, P, 1]
        # soft assignment to the palette: softmax of -|p - c|^2 / 2s^2 (|p|^2 cancels);
        # written as sums, not matmuls, so a clip's result does not depend on the batch
        inv = 1.0 / (2 * 0.12**2)
        pal = self.palette.T.unsqueeze(1)  # [3, 1, K]
        logits = (pix * pal).sum(1) * (2 * inv) - (self.palette**2).sum(-1) * inv
        soft = torch.softmax(logits, -1)  # [N, P, K]
        side = small.shape[-1]
        # salient-weighted colour mass per row, then per cell (frame, bands)
        rows = (soft * w_small.unsqueeze(-1)).view(-1, side, side, soft.shape[-1]).sum(2)
        w_rows = w_small.view(-1, side, side).sum(2)  # [N, rows]
        cells = [slice(0, side), *_band_slices(side)]
        mass = torch.stack([rows[:, c].sum(1) for c in cells], 1)  # [N, cells, K]
        norm = torch.stack([w_rows[:, c].sum(1) for c in cells], 1).unsqueeze(-1) + 1e-6
        hist = (mass / norm).clamp_min(0).sqrt().flatten(1)  # Hellinger
        layout = F.adaptive_avg_pool2d(small, 2).flatten(1) * 2 - 1
        return torch.cat([hist, layout, texture, aligned], 1)

    # -------------------------------------------------------------- motion

    def _motion(self, gray: torch.Tensor) -> torch.Tensor:
        """gray ``[B, T, H, W]`` in [0, 1] -> ``[B, (1 + bands) * 25]``."""
        B, T, H, W = gray.shape
        bands = [slice(0, H), *_band_slices(H)]

        def cell_mean(t: torch.Tensor) -> torch.Tensor:  # [B, L, H, W] -> [B, L, cells]
            rows = t.mean(-1)
            return torch.stack([rows[..., b].mean(-1) for b in bands], -1)

        it = gray[:, 1:] - gray[:, :-1]  # [B, T-1, H, W]
        gm = 0.5 * (gray[:, 1:] + gray[:, :-1])
        ix = F.pad(gm[..., 2:] - gm[..., :-2], (1, 1)) * 0.5
        iy = F.pad(gm[..., 2:, :] - gm[..., :-2, :], (0, 0, 1, 1)) * 0.5
        ixx, iyy, ixy = cell_mean(ix * ix), cell_mean(iy * iy), cell_mean(ix * iy)
        ixt, iyt, en = cell_mean(ix * it), cell_mean(iy * it), cell_mean(it.abs())
        lag = min(4, T - 1)
        e4 = cell_mean((gray[:, lag:] - gray[:, :-lag]).abs()).mean(1)  # [B, cells]
        lam = 1e-4  # Lucas-Kanade per cell, regularised for flat cells
        det = (ixx + lam) * (iyy + lam) - ixy * ixy
        u = -((iyy + lam) * ixt - ixy * iyt) / det
        v = -((ixx + lam) * iyt - ixy * ixt) / det
        feats = []
        for sig, scale in ((ixt, 300.0), (iyt, 300.0), (u, 1.0), (v, 1.0)):
            sig = _signed_sqrt(sig * scale)
            feats += [sig.mean(1, keepdim=True), sig.abs().mean(1, keepdim=True), _dft(sig)]
        en = (en * 20).sqrt()
        feats += [en.mean(1, keepdim=True), _dft(en), (e4 * 20).sqrt().unsqueeze(1)]
        return torch.cat(feats, 1).transpose(1, 2).flatten(1)  # cell-major

    # -------------------------------------------------------------- forward

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The un-mixed feature vector ``[B, raw_dim]`` (for inspection)."""
        if x.shape[2] < 2:  # motion needs two frames; one frame is a static clip
            x = x.expand(-1, -1, 2, -1, -1)
        B, _, T = x.shape[:3]
        pick = sorted({0, T // 2})  # appearance is static: two frames suffice
        frames = (x[:, :, pick] * self.std + self.mean).clamp(0, 1)
        appearance = self._appearance(frames.transpose(1, 2).flatten(0, 1))
        appearance = appearance.view(B, len(pick), -1).mean(1)
        # motion is coarse: every other pixel will do (a full 2x2 pooling costs more than
        # all the motion features together)
        step = max(x.shape[-1] // _MOTION_SIZE, 1)
        sub = x[..., ::step, ::step]
        std, mean = self.std.flatten() / 3, self.mean.sum() / 3
        gray = sub[:, 0] * std[0] + sub[:, 1] * std[1] + sub[:, 2] * std[2] + mean
        return torch.cat([appearance, self._motion(gray)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((self.raw(x) - self.offset) / self.spread).double()
        # float64 then float32: matmul kernels vary with the batch size, and the rounding
        # hides their last-bit differences, so a clip's vector is the same in any batch
        p, w_in, b_in, w_out = (t.double() for t in (self.proj, self.w_in, self.b_in, self.w_out))
        y = (z @ p + F.gelu(z @ w_in + b_in) @ w_out).float()
        return F.layer_norm(y, y.shape[-1:])


def _aligned_grid(rgb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Saliency and colour on grids centred on the salient blob (the actor), so body shape
    is seen at the same cells wherever the actor stands.

    rgb ``[N, 3, H, W]``, weight ``[N, H, W]`` -> ``[N, shape cells + 3 * colour cells]``.
    """
    N, _, H, W = rgb.shape
    w2 = weight * weight
    mass = w2.sum((1, 2)) + 1e-6
    xs = torch.linspace(-1, 1, W, dtype=rgb.dtype, device=rgb.device)
    ys = torch.linspace(-1, 1, H, dtype=rgb.dtype, device=rgb.device)
    cx = (w2.sum(1) * xs).sum(1) / mass
    cy = (w2.sum(2) * ys).sum(1) / mass
    sy = ((w2.sum(2) * (ys - cy[:, None]) ** 2).sum(1) / mass).sqrt().clamp(0.1, 1.0)
    half_h = 1.9 * sy
    half_w = 0.55 * half_h
    img = torch.cat([weight.unsqueeze(1), rgb], 1)
    out = []
    for (rows, cols), chans in ((_SHAPE_GRID, slice(0, 1)), (_COLOR_GRID, slice(1, 4))):
        gy = torch.linspace(-1, 1, 4 * rows, dtype=rgb.dtype, device=rgb.device)
        gx = torch.linspace(-1, 1, 4 * cols, dtype=rgb.dtype, device=rgb.device)
        grid_x = cx[:, None, None] + half_w[:, None, None] * gx[None, None, :]
        grid_y = cy[:, None, None] + half_h[:, None, None] * gy[None, :, None]
        grid = torch.stack(
            [grid_x.expand(-1, len(gy), -1), grid_y.expand(-1, -1, len(gx))], -1
        )  # [N, 4 rows, 4 cols, 2]
        patch = F.grid_sample(
            img[:, chans], grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        out.append(F.adaptive_avg_pool2d(patch, (rows, cols)).flatten(1))
    return torch.cat(out, 1) * 2 - 1


def _per_group(sizes: dict[str, int], values: dict[str, float]) -> torch.Tensor:
    return torch.cat([torch.full((n,), values[k]) for k, n in sizes.items()])


def _texture(gray: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Salient edge energy (horizontal, vertical, and stripe-like second differences),
    over the frame and per band. gray, weight ``[N, H, W]`` -> ``[N, (1 + bands) * 3]``."""
    gx = (gray[:, :, 1:] - gray[:, :, :-1]).abs()[:, :-2, :]
    gy = (gray[:, 1:, :] - gray[:, :-1, :]).abs()[:, :-1, :-1]
    gyy = (gray[:, 2:, :] - 2 * gray[:, 1:-1, :] + gray[:, :-2, :]).abs()[:, :, :-1]
    tex = torch.stack([gx, gy, gyy], 1) * weight[:, None, :-2, :-1]  # [N, 3, H-2, W-1]
    parts = [tex.mean((2, 3))]
    for band in _band_slices(tex.shape[-2]):
        parts.append(tex[:, :, band].mean((2, 3)))
    return torch.cat(parts, 1) * 10


@dataclass(frozen=True, kw_only=True)
class BuiltinEncoder:
    """The Encoder protocol around :class:`BuiltinFeatures`."""

    identity: EncoderIdentity
    module: BuiltinFeatures
    transform: ClipTransform

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, S, S]`` (resize short side, centre
        crop, ImageNet normalisation); frame by frame."""
        return self.transform(frames)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, S, S]`` -> ``[B, dim]`` float32, on the module's device."""
        device = self.module.proj.device  # buffers only: no parameters to ask
        with torch.inference_mode():
            return self.module(batch.to(device).float()).float()


@register_encoder("builtin")
def builtin(
    *, dim: int = 512, input_size: int = 112, clip_len: int = 16, seed: int = 0
) -> BuiltinEncoder:
    """The training-free filter-bank encoder (no download).

    Parameters
    ----------
    dim
        Output width.
    input_size
        Side S of the model input ``[3, T, S, S]``.
    clip_len
        Frames per clip the stores record (any T >= 1 encodes).
    seed
        Seed of the fixed palette and mixing weights.
    """
    transform = ClipTransform(resize=input_size, crop=input_size, mean=MEAN, std=STD)
    module = BuiltinFeatures(dim=dim, seed=seed).eval()
    identity = EncoderIdentity(
        name="builtin",
        dim=dim,
        weights_digest=weights_digest(module),
        clip_len=clip_len,
        preprocessing={**transform.to_dict(), "pooling": "filter_bank", "seed": seed},
    )
    return BuiltinEncoder(identity=identity, module=module, transform=transform)
