"""A fitted, label-free eraser of the directions in which a video's static clips differ
from other videos' (its appearance), composed after an AAM.

Why: a trained AAM can only *shrink* a direction it should remove, and the eval attackers
standardise every feature, so a shrunk direction still leaks. Projecting a direction out
removes it exactly. The directions are the top principal axes of the per-video mean static
latents of the training videos (between-video covariance): static clips have no motion, so
those axes carry appearance and background, and the only supervision is which video a
static clip came from, the same as L_B's.

``ErasedAAM`` wraps any AAM as ``eraser(aam(x))``. The eraser is fitted once before
training (``fit_static_eraser``), so the task heads train on erased outputs, and it is saved
with the weights (buffers ``eraser.mean`` and ``eraser.basis``); ``erase_rank`` in the
adapter's ``hparams`` makes ``build_aam`` rebuild the wrapper.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger("aamflow.train")


class StaticEraser(nn.Module):
    """``y -> y - ((y - mean) @ basis) @ basis.T``: removes ``rank`` fixed orthonormal
    directions around ``mean``. All-zero buffers (unfitted) make it the exact identity."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, rank))

    def set(self, mean: np.ndarray | Tensor, basis: np.ndarray | Tensor) -> None:
        """Load a fitted ``mean [D]`` and orthonormal ``basis [D, rank]``."""
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.basis.copy_(torch.as_tensor(np.asarray(basis), dtype=torch.float32))

    def forward(self, y: Tensor) -> Tensor:
        return y - ((y - self.mean) @ self.basis) @ self.basis.T


class ErasedAAM(nn.Module):
    """An AAM followed by a :class:`StaticEraser`; exposes the AAM protocol."""

    def __init__(self, inner: nn.Module, rank: int) -> None:
        super().__init__()
        self.inner = inner
        self.eraser = StaticEraser(inner.dim, rank)
        self.arch = inner.arch
        self.dim = inner.dim
        self.hparams: dict[str, Any] = {**inner.hparams, "erase_rank": rank}
        self.batch_dependent = inner.batch_dependent

    def forward(self, x: Tensor) -> Tensor:
        return self.eraser(self.inner(x))

    def forward_per_clip(self, x: Tensor) -> Tensor:
        return self.eraser(self.inner.forward_per_clip(x))


def video_means(
    features: Any, owner: np.ndarray, rows: np.ndarray, block: int = 65536
) -> np.ndarray:
    """Mean feature per video of ``rows``, over the feature rows whose ``owner`` is that video.

    ``features`` is an ``[N, D]`` array-like (numpy or dask, read ``block`` rows at a time, so
    a large store is never loaded whole). Returns float64 ``[len(rows), D]``.
    """
    owner, rows = np.asarray(owner, dtype=np.int64), np.asarray(rows, dtype=np.int64)
    # position of each row's video in ``rows``, -1 for videos not asked for
    lookup = np.full(int(max(owner.max(initial=-1), rows.max(initial=-1))) + 1, -1, np.int64)
    lookup[rows] = np.arange(len(rows))
    index = np.where(owner >= 0, lookup[np.maximum(owner, 0)], -1)
    sums = np.zeros((len(rows), features.shape[1]))
    counts = np.zeros(len(rows))
    for start in range(0, len(index), block):
        idx = index[start : start + block]
        keep = idx >= 0
        if not keep.any():
            continue
        x = np.asarray(features[start : start + block], dtype=np.float64)
        np.add.at(sums, idx[keep], x[keep])
        np.add.at(counts, idx[keep], 1)
    return sums / np.maximum(counts, 1)[:, None]


def fit_static_eraser(means: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The eraser of the top-``rank`` principal axes of per-video mean static latents.

    Parameters
    ----------
    means
        ``[V, D]`` mean static latent of each training video (``video_means``).
    rank
        Directions to remove, ``0 <= rank <= D``.

    Returns
    -------
    (mean, basis)
        ``mean [D]`` (the average video) and ``basis [D, rank]``, float32: orthonormal
        columns, except that directions beyond what the videos span (``rank`` >= the number
        of videos) are left zero, so they erase nothing.
    """
    means = np.asarray(means, dtype=np.float64)
    mean = means.mean(0)
    centred = means - mean
    # eigenvectors of the between-video covariance, largest first
    values, vectors = np.linalg.eigh(centred.T @ centred)
    values, basis = values[::-1][:rank], vectors[:, ::-1][:, :rank].copy()
    spanned = values > 1e-9 * max(float(values[:1].max(initial=0.0)), 1e-30)
    if not spanned.all():
        log.warning(
            "erase rank %d: the %d training videos span only %d directions; erasing those",
            rank,
            len(means),
            int(spanned.sum()),
        )
        basis[:, ~spanned] = 0.0
    return mean.astype(np.float32), np.ascontiguousarray(basis, dtype=np.float32)
