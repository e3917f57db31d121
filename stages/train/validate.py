"""Validation of a train-adapter run on val-split videos, through the co-trained heads.

Features are anonymized with ``apply_aam`` (what ``anonymize`` will write), then:

- ``val_ar_top1``: AR head, video score = mean of its clip probabilities;
- ``val_tad_map``: TAD head, decoded detections in seconds, average mAP over tIoU 0.3:0.7
  (``stages.eval.metrics.tad_map``);
- ``val_ad_auc``: AD head, clip scores spread over the frames each clip starts, frame-level
  ROC AUC (``stages.eval.metrics.frame_auc``);
- ``val_l_b`` and ``val_reid_top1``: a label-free privacy proxy on the first two static
  clips of each val video: their NT-Xent, and how often a static clip's nearest neighbour
  (cosine) among the other clips is its own video's pair (lower = less identifiable).

The val set is capped at ``max_videos`` per task, picked evenly over the split, and kept
on the host; everything here runs without gradients in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aamflow.stages.eval.metrics import frame_auc, tad_map
from aamflow.stages.models.aam import apply_aam
from aamflow.stages.models.ad_head import score_clips
from aamflow.stages.models.heads import predict_video
from aamflow.stages.models.losses import nt_xent
from aamflow.stages.models.tad_head import decode_tad, timesteps_to_seconds

from .data import VideoRoles, read_latents, time_grid

AAM_BATCH = 8192  # rows per apply_aam call: memory only, never changes the output


@dataclass(frozen=True, kw_only=True)
class ValData:
    """Host tensors of the val videos, per task (None when the task is not validated)."""

    pairs: tuple[Tensor, Tensor] | None  # two static clips per val video, [V, D] each
    ar: tuple[Tensor, Tensor, Tensor] | None  # clips [C, D], clip video code [C], labels [V]
    tad: list[tuple[str, float, Tensor]] | None  # (video id, fps, clips [T, D]) per video
    tad_gt: list[tuple[str, float, float, int]] | None  # (video id, start s, end s, label)
    ad: list[tuple[Tensor, np.ndarray, np.ndarray]] | None  # clips, clip first frames, frame labels
    stride: int
    span: int


def _spread(positions: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` entries of ``positions``, evenly spread (deterministic)."""
    if len(positions) <= k:
        return positions
    return positions[np.linspace(0, len(positions) - 1, k).round().astype(np.int64)]


def load_val(
    store: Any, roles: VideoRoles, tasks: tuple[str, ...], max_videos: int
) -> ValData | None:
    """Read the val videos each validated quantity needs (None when the split is empty)."""
    if not len(roles):
        return None
    pick = {"pairs": _spread(np.flatnonzero(roles.lb), max_videos)}
    for t in tasks:
        pick[t] = _spread(np.flatnonzero(roles.in_task(t)), max_videos)
    if not any(len(p) for p in pick.values()):
        return None
    rows = roles.rows[np.unique(np.concatenate(list(pick.values())))]
    lat = read_latents(store, rows, frames="ad" in tasks)
    where = {int(r): i for i, r in enumerate(lat.rows)}
    static, clips = torch.from_numpy(lat.static), torch.from_numpy(lat.clips)

    def clips_of(row: int) -> Tensor:
        i = where[row]
        s, c = int(lat.clip_start[i]), int(lat.clip_count[i])
        return clips[s : s + c]

    pairs = None
    if len(pick["pairs"]) >= 2:
        first = np.asarray([lat.static_start[where[int(roles.rows[p])]] for p in pick["pairs"]])
        pairs = (static[first], static[first + 1])
    ar = None
    if "ar" in tasks and len(pick["ar"]):
        seqs = [clips_of(int(roles.rows[p])) for p in pick["ar"]]
        codes = torch.cat([torch.full((len(s),), i) for i, s in enumerate(seqs)])
        labels = torch.as_tensor(roles.ar_label[pick["ar"]])
        ar = (torch.cat(seqs), codes, labels)
    tad = tad_gt = None
    videos = store.videos
    if "tad" in tasks and len(pick["tad"]):
        tad, tad_gt = [], []
        segs = store.segments
        for p in pick["tad"]:
            row = int(roles.rows[p])
            vid = str(videos.at[row, "id"])
            tad.append((vid, float(videos.at[row, "fps"]), clips_of(row)))
            for s in segs[segs["video"] == row].itertuples():
                tad_gt.append((vid, float(s.start), float(s.end), int(s.label)))
    ad = None
    if "ad" in tasks and len(pick["ad"]):
        frames = store.read("frame_labels")
        ad = []
        for p in pick["ad"]:
            row = int(roles.rows[p])
            fs, fc = int(videos.at[row, "frame_start"]), int(videos.at[row, "frame_count"])
            if fc == 0:
                continue
            i = where[row]
            s, c = int(lat.clip_start[i]), int(lat.clip_count[i])
            ad.append((clips_of(row), lat.clip_frame_start[s : s + c], frames[fs : fs + fc]))
    stride, span = time_grid(store.sampling)
    return ValData(
        pairs=pairs, ar=ar, tad=tad, tad_gt=tad_gt, ad=ad or None, stride=stride, span=span
    )


def _frame_scores(clip_scores: np.ndarray, clip_first: np.ndarray, n_frames: int) -> np.ndarray:
    """Each frame takes the score of the last clip starting at or before it."""
    idx = np.searchsorted(clip_first, np.arange(n_frames), side="right") - 1
    return clip_scores[np.clip(idx, 0, len(clip_scores) - 1)]


def _anonymize_all(aam: nn.Module, val: ValData) -> ValData:
    """The same ValData with every feature passed through the AAM in one ``apply_aam`` call
    (one padded micro-batch tail instead of one per video) and moved to the AAM's device."""
    device = next(aam.parameters()).device
    pieces: list[Tensor] = []
    if val.pairs is not None:
        pieces += list(val.pairs)
    if val.ar is not None:
        pieces.append(val.ar[0])
    pieces += [clips for _, _, clips in val.tad or ()]
    pieces += [clips for clips, _, _ in val.ad or ()]
    if not pieces:
        return val
    flat = apply_aam(aam, torch.cat(pieces), AAM_BATCH).to(device)
    it = iter(flat.split([len(p) for p in pieces]))
    pairs = (next(it), next(it)) if val.pairs is not None else None
    ar = (next(it), *val.ar[1:]) if val.ar is not None else None
    tad = [(vid, fps, next(it)) for vid, fps, _ in val.tad] if val.tad is not None else None
    ad = [(next(it), first, lab) for _, first, lab in val.ad] if val.ad is not None else None
    return replace(val, pairs=pairs, ar=ar, tad=tad, ad=ad)


@torch.no_grad()
def validate(
    aam: nn.Module, heads: dict[str, nn.Module], val: ValData, temperature: float
) -> dict[str, float]:
    """Val metrics of the current adapter and heads (see the module docstring)."""
    device = next(aam.parameters()).device
    val = _anonymize_all(aam, val)
    out: dict[str, float] = {}
    if val.pairs is not None:
        a, b = val.pairs
        out["val_l_b"] = float(nt_xent(a, b, temperature))
        z = F.normalize(torch.cat([a, b]).float(), dim=1)
        sim = z @ z.T
        sim.fill_diagonal_(-float("inf"))
        n = a.shape[0]
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(device)
        out["val_reid_top1"] = float((sim.argmax(1) == partner).float().mean())
    if val.ar is not None and "ar" in heads:
        clips, codes, labels = val.ar
        scores = predict_video(heads["ar"], clips, codes.to(device), len(labels))
        out["val_ar_top1"] = float((scores.argmax(1).cpu() == labels).float().mean())
    if val.tad is not None and "tad" in heads:
        head = heads["tad"]
        was = head.training
        head.eval()
        preds = []
        for vid, fps, clips in val.tad:
            x = clips[None]
            mask = torch.ones(1, x.shape[1], dtype=torch.bool, device=device)
            for s, e, score, label in decode_tad(*head(x, mask), mask)[0]:
                ts = timesteps_to_seconds(np.array([s, e]), fps, val.stride, val.span)
                preds.append((vid, float(ts[0]), float(ts[1]), int(label), float(score)))
        head.train(was)
        if val.tad_gt:
            out["val_tad_map"] = float(tad_map(preds, val.tad_gt)["avg"])
    if val.ad is not None and "ad" in heads:
        scores, labels = [], []
        for clips, first, frame_labels in val.ad:
            s = score_clips(heads["ad"], clips).float().cpu().numpy()
            scores.append(_frame_scores(s, first, len(frame_labels)))
            labels.append(frame_labels)
        out["val_ad_auc"] = frame_auc(scores, labels, frames_per_segment=1)
    return out
