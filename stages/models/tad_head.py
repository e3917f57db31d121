"""A compact anchor-free temporal action detection head (ActionFormer-style, single scale).

Time convention shared by train-adapter, eval and export (ActionFormer's, see FORMATS.md):
timestep ``i`` of a video is the clip covering frames ``[i * stride, i * stride + clip_len)``
and sits at its centre frame ``i * stride + clip_len / 2``. ``clip_len`` is the clip's span
in frames (``clip_len * frame_stride`` when frames are skipped inside a clip) and ``stride``
the start-to-start step of the dense windows. The head works in (fractional) timestep
units; convert with ``seconds_to_timesteps`` / ``timesteps_to_seconds``.

Every valid timestep predicts per-class logits and its distances to the start and end of
the action it lies in. Training: sigmoid focal loss on all valid timesteps plus a 1-D DIoU
loss on positives (timesteps inside a ground-truth segment; the shortest segment wins on
overlap), both normalised by the number of positives. Decoding: per-class Soft-NMS (or
hard NMS) and top-k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aamflow.stages.models._training import batches, seeded, set_input_stats

Num = TypeVar("Num", float, np.ndarray, Tensor)

Detection = tuple[float, float, float, int]  # (start_t, end_t, score, label)


# --- time conversion --------------------------------------------------------------------


def seconds_to_timesteps(t: Num, fps: float, stride: int, clip_len: int) -> Num:
    """Seconds -> fractional timestep index: ``(t * fps - clip_len / 2) / stride``."""
    return (t * fps - clip_len / 2) / stride


def timesteps_to_seconds(t: Num, fps: float, stride: int, clip_len: int) -> Num:
    """Fractional timestep index -> seconds: ``(t * stride + clip_len / 2) / fps``."""
    return (t * stride + clip_len / 2) / fps


# --- model ------------------------------------------------------------------------------


class TadHead(nn.Module):
    """Input standardisation, a 1-D conv stem, residual dilated convs (kernel 3), and two
    kernel-3 conv outputs: class logits ``[B, T, C]`` and start/end distances ``[B, T, 2]``
    (``exp`` of the raw output, in timesteps). Padded timesteps are zeroed after every
    layer so they never leak into valid ones.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        width: int,
        dilations: tuple[int, ...],
        dropout: float,
        prior_prob: float,
    ) -> None:
        super().__init__()
        self.hparams = {
            "width": width,
            "dilations": list(dilations),
            "dropout": dropout,
            "prior_prob": prior_prob,
        }
        self.register_buffer("in_mean", torch.zeros(dim))
        self.register_buffer("in_std", torch.ones(dim))
        self.stem = nn.Conv1d(dim, width, 3, padding=1)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in dilations)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, 3, padding=d, dilation=d) for d in dilations
        )
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Conv1d(width, num_classes, 3, padding=1)
        self.reg = nn.Conv1d(width, 2, 3, padding=1)
        # focal-loss prior: start every class at a low probability
        nn.init.constant_(self.cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        m = mask.unsqueeze(-1).to(x.dtype)  # [B, T, 1]
        x = (x - self.in_mean) / self.in_std * m
        h = F.relu(self.stem(x.transpose(1, 2))).transpose(1, 2) * m  # [B, T, W]
        for norm, conv in zip(self.norms, self.convs, strict=True):
            r = conv(norm(h).transpose(1, 2)).transpose(1, 2)
            h = h + self.drop(F.relu(r)) * m
        ht = h.transpose(1, 2)
        cls_logits = self.cls(ht).transpose(1, 2)
        offsets = torch.exp(self.reg(ht).transpose(1, 2).float().clamp(-10.0, 10.0))
        return cls_logits, offsets


def build_tad_head(
    dim: int,
    num_classes: int,
    *,
    width: int = 128,
    dilations: Sequence[int] = (1, 2, 4, 8),
    dropout: float = 0.1,
    prior_prob: float = 0.01,
) -> TadHead:
    """A fresh TAD head for ``dim``-d clip features and ``num_classes`` action classes."""
    return TadHead(
        dim,
        num_classes,
        width=width,
        dilations=tuple(int(d) for d in dilations),
        dropout=float(dropout),
        prior_prob=float(prior_prob),
    )


# --- targets and loss -------------------------------------------------------------------


class TadTargets(NamedTuple):
    """Per-timestep training targets of a padded batch."""

    cls: Tensor  # [B, T, C] one-hot of the assigned segment's class, 0 on negatives
    reg: Tensor  # [B, T, 2] distances to the assigned segment's start and end (timesteps)
    pos: Tensor  # [B, T] bool, timestep assigned to a segment


def pack_segments(
    segments: Sequence[Sequence[tuple[float, float, int]]], device: torch.device | None = None
) -> Tensor:
    """Pad per-video ``(start_t, end_t, label)`` lists into ``[B, G, 3]`` (label -1 = none)."""
    g = max([1, *(len(s) for s in segments)])
    out = torch.full((len(segments), g, 3), -1.0)
    for i, segs in enumerate(segments):
        if segs:
            out[i, : len(segs)] = torch.tensor(segs, dtype=torch.float32).view(-1, 3)
    return out.to(device) if device is not None else out


def tad_targets(
    gt: Tensor, num_steps: int, num_classes: int, *, center_radius: float | None = None
) -> TadTargets:
    """Assign timesteps ``0..num_steps-1`` to ground-truth segments.

    Parameters
    ----------
    gt
        ``[B, G, 3]`` from ``pack_segments``: start and end in timesteps, label (-1 = none).
    num_steps
        Padded sequence length T.
    num_classes
        Number of action classes C.
    center_radius
        If set, only timesteps within this many steps of a segment's centre are positive
        (ActionFormer's centre sampling); the step nearest the centre always is.

    Returns
    -------
    TadTargets
        On ``gt``'s device; built without host synchronisation.
    """
    t = torch.arange(num_steps, device=gt.device, dtype=torch.float32)[None, :, None]
    start, end, label = gt[..., 0][:, None], gt[..., 1][:, None], gt[..., 2].long()
    valid = (label >= 0)[:, None]  # [B, 1, G]
    centre = (start + end) / 2
    inside = (t >= start) & (t <= end)
    if center_radius is not None:
        inside &= (t - centre).abs() <= center_radius
    # a segment shorter than a step still gets the step nearest its centre
    inside = (inside | (t == centre.round().clamp(0, num_steps - 1))) & valid  # [B, T, G]
    length = torch.where(inside, (end - start).expand_as(inside), torch.inf)
    best = length.argmin(-1, keepdim=True)  # shortest containing segment wins
    pos = inside.any(-1)
    s = start.expand_as(inside).gather(-1, best).squeeze(-1)
    e = end.expand_as(inside).gather(-1, best).squeeze(-1)
    tt = t.squeeze(-1)
    reg = torch.stack([tt - s, e - tt], -1).clamp_min(0.0)
    reg = torch.where(pos.unsqueeze(-1), reg, torch.ones_like(reg))
    lab = label[:, None].expand(-1, num_steps, -1).gather(-1, best).squeeze(-1).clamp_min(0)
    cls = F.one_hot(lab, num_classes).float() * pos.unsqueeze(-1)
    return TadTargets(cls=cls, reg=reg, pos=pos)


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Element-wise focal loss (Lin et al. 2017) on sigmoid probabilities."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** gamma


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise 1-D distance-IoU loss on (start, end) distances from the same point."""
    ps, pe, gs, ge = pred[..., 0], pred[..., 1], target[..., 0], target[..., 1]
    inter = torch.minimum(ps, gs) + torch.minimum(pe, ge)
    union = ps + pe + gs + ge - inter
    iou = inter / union.clamp_min(eps)
    enclose = torch.maximum(ps, gs) + torch.maximum(pe, ge)
    centre_gap = ((pe - ps) - (ge - gs)) / 2
    return 1 - iou + (centre_gap / enclose.clamp_min(eps)) ** 2


def tad_loss(
    cls_logits: Tensor,
    offsets: Tensor,
    targets: TadTargets,
    mask: Tensor,
    *,
    reg_weight: float = 1.0,
) -> Tensor:
    """Focal classification loss on valid timesteps + DIoU regression loss on positives.

    Parameters
    ----------
    cls_logits, offsets
        The head's outputs ``[B, T, C]`` and ``[B, T, 2]``.
    targets
        From ``tad_targets`` for the same T.
    mask
        ``[B, T]`` bool, True on real (non-padded) timesteps.
    """
    pos = targets.pos & mask
    num_pos = pos.sum().clamp_min(1).float()
    focal = sigmoid_focal_loss(cls_logits.float(), targets.cls).sum(-1)
    cls_loss = (focal * mask).sum() / num_pos
    reg_loss = (diou_loss_1d(offsets.float(), targets.reg) * pos).sum() / num_pos
    return cls_loss + reg_weight * reg_loss


# --- decoding ---------------------------------------------------------------------------


def _tiou(seg: np.ndarray, others: np.ndarray) -> np.ndarray:
    inter = np.minimum(seg[1], others[:, 1]) - np.maximum(seg[0], others[:, 0])
    inter = np.clip(inter, 0, None)
    union = (seg[1] - seg[0]) + (others[:, 1] - others[:, 0]) - inter
    return inter / np.maximum(union, 1e-9)


def nms_1d(
    segs: np.ndarray,
    scores: np.ndarray,
    *,
    method: str = "soft",
    iou_threshold: float = 0.5,
    sigma: float = 0.5,
    min_score: float = 1e-3,
    top_k: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """1-D NMS on ``[n, 2]`` segments of one class.

    ``method="hard"`` drops segments with tIoU > ``iou_threshold`` against a kept one;
    ``method="soft"`` is Gaussian Soft-NMS (score *= exp(-tIoU^2 / sigma)). Returns kept
    indices and their (possibly decayed) scores, best first, at most ``top_k``.
    """
    if method not in ("soft", "hard"):
        raise ValueError(f"nms method must be 'soft' or 'hard', got {method!r}")
    scores = scores.astype(np.float64).copy()
    remaining = np.arange(len(scores))
    keep: list[int] = []
    kept_scores: list[float] = []
    while remaining.size and len(keep) < top_k:
        j = int(np.argmax(scores[remaining]))
        i = remaining[j]
        if scores[i] < min_score:
            break
        keep.append(int(i))
        kept_scores.append(float(scores[i]))
        remaining = np.delete(remaining, j)
        if not remaining.size:
            break
        iou = _tiou(segs[i], segs[remaining])
        if method == "hard":
            remaining = remaining[iou <= iou_threshold]
        else:
            scores[remaining] *= np.exp(-(iou**2) / sigma)
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores)


def decode_tad(
    cls_logits: Tensor,
    offsets: Tensor,
    mask: Tensor,
    *,
    score_thresh: float = 1e-3,
    pre_nms_topk: int = 2000,
    method: str = "soft",
    iou_threshold: float = 0.5,
    sigma: float = 0.5,
    top_k: int = 200,
) -> list[list[Detection]]:
    """Turn head outputs into detections per video.

    Parameters
    ----------
    cls_logits, offsets, mask
        ``[B, T, C]``, ``[B, T, 2]``, ``[B, T]`` as produced by ``TadHead``.
    score_thresh, pre_nms_topk
        Candidate (timestep, class) pairs kept before NMS.
    method, iou_threshold, sigma
        Per-class NMS, see ``nms_1d``.
    top_k
        Detections kept per video after NMS.

    Returns
    -------
    list[list[Detection]]
        Per video, ``(start_t, end_t, score, label)`` sorted by score, in timestep units and
        not clipped to the video (the caller clips after converting to seconds).
    """
    probs = torch.sigmoid(cls_logits.detach().float()).cpu()
    offs = offsets.detach().float().cpu()
    valid = mask.detach().cpu()
    results: list[list[Detection]] = []
    for b in range(probs.shape[0]):
        p = probs[b] * valid[b, :, None]
        flat = p.flatten()
        k = min(pre_nms_topk, int((flat > score_thresh).sum()))
        top_scores, top_idx = flat.topk(k)
        steps = (top_idx // p.shape[1]).numpy()
        labels = (top_idx % p.shape[1]).numpy()
        o = offs[b].numpy()[steps]
        segs = np.stack([steps - o[:, 0], steps + o[:, 1]], 1) if k else np.zeros((0, 2))
        scores = top_scores.numpy()
        dets: list[Detection] = []
        for c in np.unique(labels):
            sel = np.flatnonzero(labels == c)
            keep, kept = nms_1d(
                segs[sel],
                scores[sel],
                method=method,
                iou_threshold=iou_threshold,
                sigma=sigma,
                min_score=score_thresh,
                top_k=top_k,
            )
            for i, sc in zip(sel[keep], kept, strict=True):
                dets.append((float(segs[i, 0]), float(segs[i, 1]), float(sc), int(c)))
        dets.sort(key=lambda d: -d[2])
        results.append(dets[:top_k])
    return results


# --- fitting on fixed features ----------------------------------------------------------


def pad_videos(videos: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack ``[T_i, D]`` sequences into zero-padded ``[B, T_max, D]`` and a bool mask."""
    x = nn.utils.rnn.pad_sequence(list(videos), batch_first=True)
    lengths = torch.tensor([v.shape[0] for v in videos], device=x.device)
    mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
    return x, mask


def fit_tad_head(
    videos: Sequence[Tensor],
    segments: Sequence[Sequence[tuple[float, float, int]]],
    num_classes: int,
    epochs: int = 60,
    lr: float = 1e-3,
    seed: int = 0,
    *,
    batch_size: int = 16,
    weight_decay: float = 1e-4,
    center_radius: float | None = None,
    **hparams: object,
) -> TadHead:
    """Train a TAD head from scratch on fixed clip features.

    Parameters
    ----------
    videos
        Per-video clip features ``[T_i, D]`` (all on one device; training runs there).
    segments
        Per video, ground truth ``(start_t, end_t, label)`` in timestep units.
    num_classes
        Number of action classes.
    epochs, lr, seed
        AdamW schedule; the same seed gives the same head on the same device.
    batch_size, weight_decay, center_radius
        Mini-batch size in videos, AdamW decay, centre sampling (see ``tad_targets``).
    **hparams
        Passed to ``build_tad_head``.

    Returns
    -------
    TadHead
        In eval mode, with input standardisation fitted to ``videos``.
    """
    if not videos or len(videos) != len(segments):
        raise ValueError(f"need matching videos and segments, got {len(videos)}/{len(segments)}")
    device = videos[0].device
    x, mask = pad_videos([v.float() for v in videos])
    targets = tad_targets(
        pack_segments(segments, device), x.shape[1], num_classes, center_radius=center_radius
    )
    gen = torch.Generator().manual_seed(seed)
    with seeded(seed, device):
        head = build_tad_head(x.shape[-1], num_classes, **hparams).to(device)
        set_input_stats(head, x[mask])
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        head.train()
        for _ in range(epochs):
            for idx in batches(len(videos), batch_size, gen, device):
                t = TadTargets(*(a[idx] for a in targets))
                loss = tad_loss(*head(x[idx], mask[idx]), t, mask[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                opt.step()
    return head.eval()
