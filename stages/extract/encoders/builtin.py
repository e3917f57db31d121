"""The ``builtin`` encoder: a fixed, training-free spatio-temporal filter bank.

It downloads nothing and runs fast on CPU, yet its features carry what the privacy
benchmark needs: *appearance* (soft colour histograms, colour layout and edge texture,
pooled over the frame and over horizontal bands, emphasising pixels that stand out from
their row) and *motion* (Lucas-Kanade flow, signed motion energy and temporal-difference
energy per band, summarised by their mean, magnitude and low temporal frequencies). A
fixed seeded random projection and a GELU mix both into one ``dim``-vector, so that
appearance and motion are entangled across dimensions, as in a learned encoder.

A static clip (one frame tiled) has zero motion but its full appearance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import EncoderIdentity, register_encoder, weights_digest

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_BANDS = 4  # horizontal bands: head, shoulders, torso, legs of a standing actor
_FREQS = (1, 2, 3)  # temporal frequencies (cycles per clip) kept from motion signals


class BuiltinFeatures(nn.Module):
    """Clip ``[B, 3, T, S, S]`` (normalised RGB) -> ``[B, dim]`` features; no trainable
    parameters, only fixed seeded buffers."""

    def __init__(self, *, dim: int = 384, colors: int = 32, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1, 1))
        self.register_buffer("palette", torch.rand(colors, 3, generator=g))
        self.raw_dim = self._raw_dim(colors)
        proj = torch.randn(self.raw_dim, dim, generator=g) / math.sqrt(self.raw_dim)
        self.register_buffer("proj", proj)
        self.register_buffer("bias", 0.1 * torch.randn(dim, generator=g))

    @staticmethod
    def _raw_dim(colors: int) -> int:
        hist = (1 + _BANDS) * colors
        layout = 3 * 4
        texture = (1 + _BANDS) * 3
        aligned = _SHAPE_GRID[0] * _SHAPE_GRID[1] + 3 * _COLOR_GRID[0] * _COLOR_GRID[1]
        motion = (1 + _BANDS) * (4 * (2 + len(_FREQS)) + (1 + len(_FREQS)) + 1)
        return hist + layout + texture + aligned + motion

    # -------------------------------------------------------------- appearance

    def _appearance(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb ``[N, 3, S, S]`` in [0, 1]: one frame per row -> ``[N, appearance dims]``."""
        row_dev = (rgb - rgb.mean(-1, keepdim=True)).abs().sum(1)
        weight = ((row_dev - 0.25) / 0.35).clamp(0, 1)  # pixels that stand out from their row
        aligned = _aligned_grid(rgb, weight)
        texture = _texture(rgb.mean(1), weight)
        small = F.adaptive_avg_pool2d(rgb, 56)
        w_small = F.adaptive_avg_pool2d(weight.unsqueeze(1), 56)[:, 0]
        pix = small.permute(0, 2, 3, 1)  # [N, H, W, 3]
        pal = self.palette
        d2 = (pix * pix).sum(-1, keepdim=True) - 2 * pix @ pal.T + (pal * pal).sum(-1)
        soft = torch.softmax(d2 * (-1.0 / (2 * 0.12**2)), -1)  # [N, H, W, K]
        w = w_small.unsqueeze(-1)
        hists = [(soft * w).sum((1, 2)) / (w.sum((1, 2)) + 1e-6)]
        for band in _band_slices(small.shape[-2]):
            wb = w[:, band]
            hists.append((soft[:, band] * wb).sum((1, 2)) / (wb.sum((1, 2)) + 1e-6))
        hist = torch.stack(hists, 1).clamp_min(0).sqrt().flatten(1)  # Hellinger
        layout = F.adaptive_avg_pool2d(small, 2).flatten(1) * 2 - 1
        return torch.cat([hist, layout, texture, aligned], 1)

    # -------------------------------------------------------------- motion

    def _motion(self, gray: torch.Tensor) -> torch.Tensor:
        """gray ``[B, T, H, W]`` in [0, 1]."""
        it = gray[:, 1:] - gray[:, :-1]  # [B, T-1, H, W]
        gm = 0.5 * (gray[:, 1:] + gray[:, :-1])
        ix = F.pad(gm[..., 2:] - gm[..., :-2], (1, 1)) * 0.5
        iy = F.pad(gm[..., 2:, :] - gm[..., :-2, :], (0, 0, 1, 1)) * 0.5
        prods = torch.stack([ix * ix, iy * iy, ix * iy, ix * it, iy * it, it.abs()], 1)
        lag = min(4, gray.shape[1] - 1)
        e4 = (gray[:, lag:] - gray[:, :-lag]).abs()
        H = gray.shape[-2]
        cells = [slice(0, H)] + _band_slices(H)
        feats = []
        for band in cells:
            p = prods[..., band, :].mean((-1, -2))  # [B, 6, T-1]
            ixx, iyy, ixy, ixt, iyt, en = p.unbind(1)
            lam = 1e-4
            det = (ixx + lam) * (iyy + lam) - ixy * ixy
            u = -((iyy + lam) * ixt - ixy * iyt) / det
            v = -((ixx + lam) * iyt - ixy * ixt) / det
            for s, scale in ((ixt, 300.0), (iyt, 300.0), (u, 1.0), (v, 1.0)):
                s = _signed_sqrt(s * scale)
                feats += [s.mean(1, keepdim=True), s.abs().mean(1, keepdim=True), _dft(s)]
            en = (en * 20).sqrt()
            feats += [en.mean(1, keepdim=True), _dft(en)]
            feats.append((e4[..., band, :].mean((1, 2, 3)) * 20).sqrt().unsqueeze(1))
        return torch.cat(feats, 1)

    # -------------------------------------------------------------- forward

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The un-mixed feature vector ``[B, raw_dim]`` (for inspection)."""
        rgb = (x * self.std + self.mean).clamp(0, 1)
        B, _, T = rgb.shape[:3]
        pick = sorted({0, T // 2})  # appearance is static: two frames suffice
        frames = rgb[:, :, pick].transpose(1, 2).flatten(0, 1)  # [B*F, 3, S, S]
        appearance = self._appearance(frames).view(B, len(pick), -1).mean(1)
        gray = F.adaptive_avg_pool3d(rgb.mean(1, keepdim=True), (T, 56, 56))[:, 0]
        return torch.cat([appearance, self._motion(gray)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.raw(x) @ self.proj + self.bias)


_SHAPE_GRID = (12, 6)  # rows x columns of the actor-aligned saliency (shape) grid
_COLOR_GRID = (8, 4)  # rows x columns of the actor-aligned colour grid


def _aligned_grid(rgb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Saliency and colour on grids centred on the salient blob (the actor), so body shape
    is seen at the same cells wherever the actor stands.

    rgb ``[N, 3, H, W]``, weight ``[N, H, W]`` -> ``[N, shape cells + 3 * colour cells]``.
    """
    N, _, H, W = rgb.shape
    w2 = weight * weight
    mass = w2.sum((1, 2)) + 1e-6
    xs = torch.linspace(-1, 1, W, dtype=rgb.dtype)
    ys = torch.linspace(-1, 1, H, dtype=rgb.dtype)
    cx = (w2.sum(1) * xs).sum(1) / mass
    cy = (w2.sum(2) * ys).sum(1) / mass
    sy = ((w2.sum(2) * (ys - cy[:, None]) ** 2).sum(1) / mass).sqrt().clamp(0.1, 1.0)
    half_h = 1.9 * sy
    half_w = 0.55 * half_h
    img = torch.cat([weight.unsqueeze(1), rgb], 1)
    out = []
    for (rows, cols), chans in ((_SHAPE_GRID, slice(0, 1)), (_COLOR_GRID, slice(1, 4))):
        gy = torch.linspace(-1, 1, 4 * rows, dtype=rgb.dtype)
        gx = torch.linspace(-1, 1, 4 * cols, dtype=rgb.dtype)
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


def _band_slices(n: int) -> list[slice]:
    edges = np.linspace(0, n, _BANDS + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().sqrt()


def _dft(s: torch.Tensor) -> torch.Tensor:
    """Magnitudes of a few low temporal frequencies of ``s [B, L]``."""
    n = s.shape[1]
    t = torch.arange(n, dtype=s.dtype, device=s.device)
    out = []
    for k in _FREQS:
        ang = 2 * math.pi * k * t / max(n, 1)
        re = (s * torch.cos(ang)).mean(1)
        im = (s * torch.sin(ang)).mean(1)
        out.append(torch.sqrt(re * re + im * im + 1e-12))
    return torch.stack(out, 1)


class BuiltinEncoder:
    """The Encoder protocol around :class:`BuiltinFeatures`."""

    def __init__(self, *, dim: int = 384, input_size: int = 112, clip_len: int = 16, seed: int = 0):
        self.input_size = input_size
        self.module = BuiltinFeatures(dim=dim, seed=seed).eval()
        self.identity = EncoderIdentity(
            name="builtin",
            dim=dim,
            weights_digest=weights_digest(self.module),
            clip_len=clip_len,
            preprocessing={
                "resize_short": input_size,
                "crop": input_size,
                "mean": list(MEAN),
                "std": list(STD),
                "layout": "CTHW",
                "seed": seed,
            },
        )

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> float32 ``[3, T, S, S]``: resize the short side to S,
        centre-crop, normalise."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0
        S = self.input_size
        h, w = x.shape[-2:]
        if min(h, w) != S:
            scale = S / min(h, w)
            size = (max(S, round(h * scale)), max(S, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        h, w = x.shape[-2:]
        top, left = (h - S) // 2, (w - S) // 2
        x = x[..., top : top + S, left : left + S]
        mean = torch.tensor(MEAN).view(3, 1, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1, 1)
        return ((x - mean) / std).contiguous()

    @torch.no_grad()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, S, S]`` -> ``[B, dim]`` float32."""
        return self.module(batch.float()).float()


@register_encoder("builtin")
def builtin(**options: Any) -> BuiltinEncoder:
    """Factory: options ``dim`` (384), ``input_size`` (112), ``clip_len`` (16), ``seed`` (0)."""
    return BuiltinEncoder(**options)
