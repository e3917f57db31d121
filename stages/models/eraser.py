"""Fitted, label-free linear erasers composed with an AAM.

Why: a trained AAM can only *shrink* a direction it should remove, and the eval attackers
standardise every feature, so a shrunk direction still leaks. Projecting a direction out
removes it exactly. Two kinds, both fitted once before training from cached latents with no
private label (the only supervision is which video a clip came from, as for L_B, plus the
seen tasks' labels):

- ``video`` (the default): the directions in which *videos* differ from each other, in
  ordinary clips and static clips alike, relative to how much the clips of one video vary
  over time and how much the seen task's classes differ. Appearance (skin, body shape,
  clothing, background) is constant within a video; motion, and the action a head needs,
  is not. Formally, with ``S_B`` the between-video scatter of per-video mean clip and
  static latents (each video's mean taken relative to the mean of its seen-task class) and
  ``S_K`` the *keep* scatter (within-video scatter of clips plus the between-class scatter
  of the seen task), the eraser removes the top-``rank`` generalized eigenvectors of
  ``(S_B, S_K)``: ``y -> y - ((y - mean) @ W) @ A.T`` with ``W`` those eigenvectors
  (``W.T S_K W = I``) and ``A = S_K W``. It is an oblique projection: it zeroes the
  ``rank`` nuisance coordinates ``W.T y`` while leaving every direction ``S_K``-orthogonal
  to them (the temporal and task structure) untouched, which an orthogonal projection of
  the same span would not. It is applied *before* the AAM. By default it is the second of
  two stages: first the principal axes of every static clip are projected out
  (``static_clip_directions``), and ``S_B``/``S_K`` are taken on what that leaves;
  ``compose`` turns the pair into one eraser of the same form.
- ``static`` (the earlier recipe): the top principal axes of per-video mean static latents,
  projected out orthogonally *after* the AAM.

``ErasedAAM`` wraps any AAM with its eraser; the eraser is saved with the weights (buffers
``eraser.mean``, ``eraser.basis`` and ``eraser.span``) and ``erase_rank`` / ``eraser`` in
the adapter's ``hparams`` make ``build_aam`` rebuild the wrapper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger("aamflow.train")

ERASERS = ("none", "static", "video")
"""Eraser kinds: none, static (after the AAM), video (before the AAM, the default)."""

KEEP_REG = 1e-3  # ridge on S_K, relative to its mean eigenvalue: flat directions stay finite


class LinearEraser(nn.Module):
    """``y -> y - ((y - mean) @ basis) @ span.T``: removes ``rank`` fixed directions
    (``span``) read by the functionals ``basis`` around ``mean``. An orthogonal eraser has
    ``span == basis`` (orthonormal). All-zero buffers (unfitted) make it the exact identity."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(dim, rank))
        self.register_buffer("span", torch.zeros(dim, rank))

    def set(
        self,
        mean: np.ndarray | Tensor,
        basis: np.ndarray | Tensor,
        span: np.ndarray | Tensor | None = None,
    ) -> None:
        """Load a fitted ``mean [D]``, ``basis [D, rank]`` and ``span`` (default: basis)."""
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.mean.copy_(as_t(mean))
        self.basis.copy_(as_t(basis))
        self.span.copy_(as_t(basis if span is None else span))

    def forward(self, y: Tensor) -> Tensor:
        return y - ((y - self.mean) @ self.basis) @ self.span.T

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints written before ``span`` existed hold orthogonal erasers: span = basis
        if prefix + "span" not in state and prefix + "basis" in state:
            state[prefix + "span"] = state[prefix + "basis"]
        super()._load_from_state_dict(state, prefix, *args)


StaticEraser = LinearEraser  # the name checkpoints of the static recipe were built with


class ErasedAAM(nn.Module):
    """An AAM composed with a :class:`LinearEraser`; exposes the AAM protocol.

    ``kind="video"`` erases the input (``aam(eraser(x))``) and, with ``pin_output``, the
    output too (``eraser(aam(eraser(x)))``), ``kind="static"`` the output
    (``eraser(aam(x))``). Pinning keeps every output exactly on the kept subspace: the AAM
    cannot write anything into an erased direction, so the store holds no more there than
    the eraser's mean, and a head standardising an erased coordinate never divides a moving
    value by its rounding-level std (opennsfw: the TAD head's loss reached 5e3 unpinned).
    :meth:`target` is what latent consistency compares the output to: the erased input for
    ``video`` (the AAM must not be rewarded for restoring what the eraser removed), the raw
    input for ``static``.
    """

    def __init__(
        self, inner: nn.Module, rank: int, kind: str = "static", pin_output: bool = False
    ) -> None:
        super().__init__()
        if kind not in ERASERS[1:]:
            raise ValueError(f"eraser kind {kind!r}; valid: {', '.join(ERASERS[1:])}")
        self.inner = inner
        self.eraser = LinearEraser(inner.dim, rank)
        self.kind = kind
        self.pin_output = pin_output and kind == "video"
        self.arch = inner.arch
        self.dim = inner.dim
        self.hparams: dict[str, Any] = {**inner.hparams, "erase_rank": rank, "eraser": kind}
        if (
            self.pin_output
        ):  # absent from checkpoints written before pinning: they rebuild as before
            self.hparams["pin_output"] = True
        self.batch_dependent = inner.batch_dependent

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "video":
            y = self.inner(self.eraser(x))
            return self.eraser(y) if self.pin_output else y
        return self.eraser(self.inner(x))

    def forward_per_clip(self, x: Tensor) -> Tensor:
        if self.kind == "video":
            y = self.inner.forward_per_clip(self.eraser(x))
            return self.eraser(y) if self.pin_output else y
        return self.eraser(self.inner.forward_per_clip(x))

    def target(self, x: Tensor) -> Tensor:
        return self.eraser(x) if self.kind == "video" else x


def consistency_target(aam: nn.Module, x: Tensor) -> Tensor:
    """What L_LC compares ``aam(x)`` to: ``x``, or the erased ``x`` for a video eraser."""
    target = getattr(aam, "target", None)
    return target(x) if target is not None else x


# ----------------------------------------------------------------------- the static eraser


def video_means(
    features: Any, owner: np.ndarray, rows: np.ndarray, block: int = 65536
) -> np.ndarray:
    """Mean feature per video of ``rows``, over the feature rows whose ``owner`` is that video.

    ``features`` is an ``[N, D]`` array-like (numpy or dask, read ``block`` rows at a time, so
    a large store is never loaded whole). Returns float64 ``[len(rows), D]``.
    """
    sums, counts = _video_sums(features, owner, rows, block)
    return sums / np.maximum(counts, 1)[:, None]


def _positions(owner: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The position in ``rows`` of each feature row's video, -1 for videos not asked for."""
    owner, rows = np.asarray(owner, dtype=np.int64), np.asarray(rows, dtype=np.int64)
    lookup = np.full(int(max(owner.max(initial=-1), rows.max(initial=-1))) + 1, -1, np.int64)
    lookup[rows] = np.arange(len(rows))
    return np.where(owner >= 0, lookup[np.maximum(owner, 0)], -1)


def _blocks(features: Any, index: np.ndarray, block: int) -> Any:
    """``(positions, float64 rows)`` of the feature rows that belong to a wanted video."""
    for start in range(0, len(index), block):
        idx = index[start : start + block]
        keep = idx >= 0
        if keep.any():
            x = np.asarray(features[start : start + block], dtype=np.float64)
            yield idx[keep], x[keep]


def _video_sums(
    features: Any, owner: np.ndarray, rows: np.ndarray, block: int
) -> tuple[np.ndarray, np.ndarray]:
    index = _positions(owner, rows)
    sums = torch.zeros(len(rows), features.shape[1], dtype=torch.float64)
    counts = np.bincount(index[index >= 0], minlength=len(rows)).astype(np.float64)
    for idx, x in _blocks(features, index, block):
        sums.index_add_(0, torch.from_numpy(idx), torch.from_numpy(x))  # np.add.at is slow
    return sums.numpy(), counts


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


# ----------------------------------------------------------------------- the video eraser


@dataclass(frozen=True, kw_only=True)
class NuisanceScatter:
    """Second moments a video eraser is fitted from (float64, ``[D]`` / ``[D, D]``).

    ``between``: between-video scatter of per-video mean clip latents (each relative to the
    mean of its seen-task group) plus that of per-video mean static latents; ``keep``:
    within-video scatter of clip latents plus the between-group scatter of the seen-task
    classes; ``mean``: the clips' mean, the point the eraser projects around.
    """

    mean: np.ndarray
    between: np.ndarray
    keep: np.ndarray
    videos: int
    clips: int


def _group_scatter(means: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(within-group, between-group) scatter of per-video means, per video."""
    d = means.shape[1]
    within, between = np.zeros((d, d)), np.zeros((d, d))
    centre = means.mean(0)
    for g in np.unique(groups):
        m = means[groups == g]
        mu = m.mean(0)
        r = m - mu
        within += r.T @ r
        if g >= 0:  # labelled classes only: an unlabelled group is no task structure
            between += len(m) * np.outer(mu - centre, mu - centre)
    return within / len(means), between / len(means)


def nuisance_scatter(
    clips: Any,
    clip_owner: np.ndarray,
    static: Any,
    static_owner: np.ndarray,
    rows: np.ndarray,
    groups: np.ndarray,
    block: int = 65536,
) -> NuisanceScatter:
    """Accumulate a :class:`NuisanceScatter` from a store's latents, ``block`` rows at a time.

    Parameters
    ----------
    clips, static
        ``[N, D]`` array-likes (numpy or dask) of clip and static latents.
    clip_owner, static_owner
        The video row of each clip / static clip.
    rows
        The training videos the eraser is fitted on.
    groups
        Per video of ``rows``, its seen-task class (>= 0) or a negative code for videos
        whose class is unknown (each negative code is its own unlabelled group).
    """
    rows = np.asarray(rows, dtype=np.int64)
    groups = np.asarray(groups, dtype=np.int64)
    d = clips.shape[1]
    index = _positions(clip_owner, rows)
    sums = torch.zeros(len(rows), d, dtype=torch.float64)
    counts = np.bincount(index[index >= 0], minlength=len(rows)).astype(np.float64)
    second = np.zeros((d, d))
    for idx, x in _blocks(clips, index, block):
        sums.index_add_(0, torch.from_numpy(idx), torch.from_numpy(x))
        second += x.T @ x
    sums = sums.numpy()
    has = counts > 0
    n = float(counts.sum())
    means = sums[has] / counts[has, None]
    # within-video scatter: sum x x^T - sum_v n_v m_v m_v^T, per clip
    within_video = (second - (means * counts[has, None]).T @ means) / max(n, 1.0)
    residual, classes = _group_scatter(means, groups[has])
    static_sums, static_counts = _video_sums(static, static_owner, rows, block)
    keep_static = static_counts > 0
    static_means = static_sums[keep_static] / static_counts[keep_static, None]
    s = static_means - static_means.mean(0) if len(static_means) else static_means
    between = residual + (s.T @ s / len(s) if len(s) else 0.0)
    return NuisanceScatter(
        mean=sums[has].sum(0) / max(n, 1.0),
        between=between,
        keep=within_video + classes,
        videos=int(has.sum()),
        clips=int(n),
    )


@dataclass(frozen=True, kw_only=True)
class EraserDirections:
    """Every candidate direction of a video eraser, most video-specific first.

    ``basis[:, :k]`` and ``span[:, :k]`` give the eraser of rank ``k``; ``ratio[i]`` is
    direction i's between-video variance over its keep variance.
    """

    mean: np.ndarray  # [D]
    basis: np.ndarray  # [D, D] functionals W (W.T S_K W = I)
    span: np.ndarray  # [D, D] removed directions A = S_K W
    ratio: np.ndarray  # [D], descending

    def eraser(self, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 ``(mean, basis, span)`` of the rank-``rank`` eraser."""
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        return f32(self.mean), f32(self.basis[:, :rank]), f32(self.span[:, :rank])

    def apply(self, x: np.ndarray, rank: int) -> np.ndarray:
        """``x`` erased at ``rank``, in float64 (for fitting-time criteria)."""
        if rank == 0:
            return np.asarray(x, dtype=np.float64)
        w, a = self.basis[:, :rank], self.span[:, :rank]
        x = np.asarray(x, dtype=np.float64)
        return x - ((x - self.mean) @ w) @ a.T


def video_eraser_directions(
    scatter: NuisanceScatter, reg: float = KEEP_REG, between_reg: float = 0.0
) -> EraserDirections:
    """The generalized eigenvectors of ``(between + between_reg * mean_eig * I,
    keep + reg * mean_eig * I)``, largest ratio first, and the directions ``A = keep W`` an
    oblique eraser removes."""
    d = scatter.keep.shape[0]
    keep = (scatter.keep + scatter.keep.T) / 2
    keep = keep + reg * max(float(np.trace(keep)) / d, 1e-12) * np.eye(d)
    between = (scatter.between + scatter.between.T) / 2
    between = between + between_reg * max(float(np.trace(between)) / d, 1e-12) * np.eye(d)
    chol = np.linalg.cholesky(keep)
    inv = np.linalg.inv(chol)
    m = inv @ between @ inv.T
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    order = np.argsort(values)[::-1]
    basis = inv.T @ vectors[:, order]
    return EraserDirections(
        mean=scatter.mean,
        basis=basis,
        span=keep @ basis,
        ratio=np.maximum(values[order], 0.0),
    )


# ------------------------------------------------------------- the static-clip stage


class Erased:
    """An ``[N, D]`` array-like read through a fitted eraser (``directions.apply(x, rank)``),
    block by block, so a later fit sees erased latents without a copy of the store."""

    def __init__(self, features: Any, directions: EraserDirections, rank: int) -> None:
        self.features, self.directions, self.rank = features, directions, rank
        self.shape = features.shape

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.directions.apply(np.asarray(self.features[index], dtype=np.float64), self.rank)


def static_clip_directions(
    static: Any, static_owner: np.ndarray, rows: np.ndarray, block: int = 65536
) -> EraserDirections:
    """The principal axes of the training videos' *static clips* (every one, not per-video
    means), largest variance first, as an orthogonal eraser around their mean.

    A static clip holds one frame, so what varies across static clips is appearance and
    pose; a temporal stream that is zero on a static clip (the onnx encoders' feature
    flow) lies outside every axis, so erasing all of them leaves motion exactly. Ten
    static clips per video span far more directions than one mean per video does.
    ``ratio`` is each axis's share of the static clips' variance.
    """
    index = _positions(static_owner, rows)
    d = static.shape[1]
    total, second, n = np.zeros(d), np.zeros((d, d)), 0
    for _, x in _blocks(static, index, block):
        total += x.sum(0)
        second += x.T @ x
        n += len(x)
    if n < 2:
        raise ValueError("static-clip eraser: fewer than two static clips")
    mean = total / n
    cov = (second - n * np.outer(mean, mean)) / n
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1]
    values = np.maximum(values[order], 0.0)
    vectors = vectors[:, order]
    share = values / max(float(values.sum()), 1e-30)
    return EraserDirections(mean=mean, basis=vectors, span=vectors, ratio=share)


def spanned_rank(directions: EraserDirections, rel: float = 1e-6) -> int:
    """How many of a static-clip eraser's axes carry variance (at least ``rel`` of the
    largest): erasing exactly these removes everything static clips vary in."""
    r = directions.ratio
    return int((r > rel * max(float(r[:1].max(initial=0.0)), 1e-30)).sum())


def compose(first: EraserDirections, rank: int, second: EraserDirections) -> EraserDirections:
    """Directions whose rank-``rank + k`` eraser is ``first`` at ``rank`` followed by
    ``second`` at ``k`` (``second`` fitted on latents erased by the first, an orthogonal
    eraser). One oblique eraser ``y - ((y - m) W) A.T`` with ``W = [B, (I - B B.T) W2]``,
    ``A = [B, A2]`` and ``m`` the second's mean: every latent erased by the first has the
    same ``B``-coordinates as the first's mean, so one centre serves both."""
    b = first.basis[:, :rank]
    w2 = second.basis - b @ (b.T @ second.basis)
    return EraserDirections(
        mean=second.mean,
        basis=np.concatenate([b, w2], 1),
        span=np.concatenate([first.span[:, :rank], second.span], 1),
        ratio=np.concatenate([first.ratio[:rank], second.ratio]),
    )
