"""A weakly supervised anomaly detection head (multiple-instance learning, video labels only).

Scorer: input standardisation, then Linear-ReLU-Dropout-Linear-Sigmoid on each clip vector
(Sultani et al. 2018's MLP, shortened). Training follows RTFM's data handling and Sultani's
loss: each video's clips are pooled into 32 segments (RTFM ``process_feat``: mean over
contiguous groups, a group of zero clips repeats its start clip, so T < 32 works), and the
loss is the MIL ranking loss ``mean over (abnormal, normal) pairs of
max(0, 1 - max s_abnormal + max s_normal)`` plus ``8e-5`` x temporal smoothness and
``8e-5`` x sparsity of abnormal bags' scores. At test time clips are scored one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from aamflow.stages.models._training import batches, seeded, set_input_stats

N_SEGMENTS = 32


class AdScorer(nn.Module):
    """Per-clip anomaly score in (0, 1) for features ``[..., D]`` -> ``[...]``."""

    def __init__(self, dim: int, *, hidden: int, dropout: float) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "dropout": dropout}
        self.register_buffer("in_mean", torch.zeros(dim))
        self.register_buffer("in_std", torch.ones(dim))
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp((x - self.in_mean) / self.in_std).squeeze(-1)


def build_ad_head(dim: int, *, hidden: int = 128, dropout: float = 0.6) -> AdScorer:
    """A fresh anomaly scorer for ``dim``-d clip features (dropout 0.6 as in Sultani)."""
    return AdScorer(dim, hidden=hidden, dropout=float(dropout))


def segment_pool_matrix(num_clips: int, n_segments: int = N_SEGMENTS) -> Tensor:
    """``[n_segments, num_clips]`` averaging weights reproducing RTFM's ``process_feat``.

    Segment i averages clips ``r[i]:r[i+1]`` with ``r = linspace(0, T, n+1)`` cast to int;
    an empty range takes clip ``r[i]`` alone.
    """
    if num_clips < 1:
        raise ValueError("a video needs at least one clip to be pooled")
    r = np.linspace(0, num_clips, n_segments + 1, dtype=np.int64)
    w = np.zeros((n_segments, num_clips), dtype=np.float32)
    for i in range(n_segments):
        if r[i] != r[i + 1]:
            w[i, r[i] : r[i + 1]] = 1.0 / (r[i + 1] - r[i])
        else:
            w[i, r[i]] = 1.0
    return torch.from_numpy(w)


def pool_segments(feats: Tensor, n_segments: int = N_SEGMENTS) -> Tensor:
    """Pool ``[T, D]`` clip features into ``[n_segments, D]`` (differentiable)."""
    w = segment_pool_matrix(feats.shape[0], n_segments).to(feats.device, feats.dtype)
    return w @ feats


def mil_ranking_loss(
    scores: Tensor,
    labels: Tensor,
    *,
    margin: float = 1.0,
    smooth: float = 8e-5,
    sparse: float = 8e-5,
) -> Tensor:
    """Sultani's MIL ranking loss over a batch of bags.

    Parameters
    ----------
    scores
        ``[B, S]`` segment scores in (0, 1).
    labels
        ``[B]`` video labels, 1 = abnormal.
    margin, smooth, sparse
        Hinge margin and the weights of the smoothness and sparsity terms.

    Returns
    -------
    Tensor
        0-d; the hinge term is 0 when the batch lacks one of the two classes.
    """
    scores = scores.float()
    abnormal = labels.bool()
    top = scores.max(1).values
    pair = abnormal[:, None] & ~abnormal[None, :]
    hinge = torch.relu(margin - top[:, None] + top[None, :])
    rank = (hinge * pair).sum() / pair.sum().clamp_min(1)
    n_ab = abnormal.sum().clamp_min(1)
    smoothness = ((scores[:, 1:] - scores[:, :-1]) ** 2).sum(1)
    sparsity = scores.sum(1)
    reg = ((smooth * smoothness + sparse * sparsity) * abnormal).sum() / n_ab
    return rank + reg


def score_clips(module: nn.Module, feats: Tensor) -> Tensor:
    """Anomaly score per clip, ``[T, D]`` -> ``[T]``, in eval mode without gradients."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(feats.float())
    finally:
        module.train(was_training)


def fit_ad_head(
    videos: Sequence[Tensor],
    video_labels: Sequence[int],
    epochs: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    batch_size: int = 32,
    weight_decay: float = 1e-3,
    n_segments: int = N_SEGMENTS,
    **hparams: object,
) -> AdScorer:
    """Train an anomaly scorer from scratch on fixed clip features and video labels.

    Parameters
    ----------
    videos
        Per-video clip features ``[T_i, D]`` (one device; training runs there).
    video_labels
        1 for abnormal videos, 0 for normal ones.
    epochs, lr, seed
        AdamW schedule; the same seed gives the same scorer on the same device.
    batch_size, weight_decay, n_segments
        Videos per step, AdamW decay, segments per bag.
    **hparams
        Passed to ``build_ad_head``.

    Returns
    -------
    AdScorer
        In eval mode, with input standardisation fitted to all training clips.
    """
    if not videos or len(videos) != len(video_labels):
        raise ValueError(f"need matching videos and labels, got {len(videos)}/{len(video_labels)}")
    device = videos[0].device
    bags = torch.stack([pool_segments(v.float(), n_segments) for v in videos])
    labels = torch.as_tensor(list(video_labels), device=device)
    gen = torch.Generator().manual_seed(seed)
    with seeded(seed, device):
        head = build_ad_head(bags.shape[-1], **hparams).to(device)
        set_input_stats(head, torch.cat([v.float() for v in videos]))
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        head.train()
        for _ in range(epochs):
            for idx in batches(len(videos), batch_size, gen, device):
                loss = mil_ranking_loss(head(bags[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return head.eval()
