"""Training data of train-adapter: which videos feed which loss, latents on the device, and
the on-device samplers of one step.

Roles (per video of a split, from the store's tables):

- **L_B / L_LC** (``lb``): every ok video with at least two static clips and one clip.
- **ar**: trimmed (``task == "ar"``) videos with an action label.
- **tad**: untrimmed ``task == "tad"`` videos; their segments (seconds) become timesteps
  (``tad_head.seconds_to_timesteps`` with the dense stride and the clip span).
- **ad**: videos with a 0/1 anomaly label.

Latents live on the device as one ``TrainData`` (static and clip features plus per-video
index tensors). When all training latents fit in the memory budget they are loaded once;
otherwise each epoch visits the parts in a seeded random order, grouped into chunks of at
most half the budget, and a background thread reads the next chunk while the current one
trains. Samplers draw every index on the device from a device ``torch.Generator``, so a
step never waits for the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from aamflow.stages.models.ad_head import N_SEGMENTS
from aamflow.stages.models.tad_head import seconds_to_timesteps

TASKS = ("ar", "tad", "ad")


# --- roles ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class VideoRoles:
    """Per-video roles of the ok videos of one split; every array is aligned with ``rows``."""

    rows: np.ndarray  # global video rows
    part: np.ndarray  # index into store.part_names
    static_count: np.ndarray
    clip_count: np.ndarray
    lb: np.ndarray  # bool: enters L_B and L_LC
    ar_label: np.ndarray  # action code; -1: not an AR video
    tad: np.ndarray  # bool: TAD video
    tad_segments: tuple[np.ndarray, ...]  # per video [n, 3]: start_t, end_t, label (timesteps)
    ad_label: np.ndarray  # 0/1; -1: not an AD video

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, index: np.ndarray) -> VideoRoles:
        """The roles of a subset (boolean mask or integer positions), in that order."""
        idx = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = tuple(value[i] for i in idx) if isinstance(value, tuple) else value[idx]
        return VideoRoles(**out)

    def in_task(self, task: str) -> np.ndarray:
        """Bool mask of the videos that feed ``task``'s head."""
        if task == "ar":
            return self.ar_label >= 0
        if task == "tad":
            return self.tad.copy()
        if task == "ad":
            return self.ad_label >= 0
        raise KeyError(task)

    def used(self, tasks: Sequence[str]) -> np.ndarray:
        """Bool mask of the videos any loss of a run with these tasks reads."""
        mask = self.lb.copy()
        for t in tasks:
            mask |= self.in_task(t)
        return mask


def time_grid(sampling: dict[str, Any]) -> tuple[int, int]:
    """(stride, span) in frames of the dense windows of untrimmed videos: the TAD time
    convention of ``tad_head`` (stride = dense_stride, span = clip_len * frame_stride)."""
    stride = int(sampling.get("dense_stride", sampling.get("clip_stride", 16)))
    return stride, int(sampling.get("clip_len", 16)) * int(sampling.get("frame_stride", 1))


def video_roles(store: Any, split: str) -> VideoRoles:
    """Roles of the ok videos of ``split`` in an open ``FeatureStore``."""
    v = store.videos
    v = v[(v["split"] == split) & (v["status"] == "ok")]
    stride, span = time_grid(store.sampling)
    part_index = {name: i for i, name in enumerate(store.part_names)}
    rows = v["row"].to_numpy(np.int64)
    clip_count = v["clip_count"].to_numpy(np.int64)
    static_count = v["static_count"].to_numpy(np.int64)
    task = v["task"].to_numpy()
    fps = v["fps"].to_numpy(np.float64)
    has_clips = clip_count >= 1
    action = v["label_action"].to_numpy(np.int64)
    anomaly = v["label_anomaly"].to_numpy(np.int64)
    tad = (task == "tad") & has_clips & np.isfinite(fps) & (fps > 0)
    segs = store.segments
    by_video = {int(k): g for k, g in segs.groupby("video")} if len(segs) else {}
    tad_segments = []
    for row, is_tad, f in zip(rows, tad, fps, strict=True):
        g = by_video.get(int(row)) if is_tad else None
        if g is None or not len(g):
            tad_segments.append(np.zeros((0, 3), np.float32))
            continue
        start = seconds_to_timesteps(g["start"].to_numpy(np.float64), f, stride, span)
        end = seconds_to_timesteps(g["end"].to_numpy(np.float64), f, stride, span)
        tad_segments.append(np.stack([start, end, g["label"].to_numpy()], 1).astype(np.float32))
    return VideoRoles(
        rows=rows,
        part=np.asarray([part_index[p] for p in v["part"]], dtype=np.int64),
        static_count=static_count,
        clip_count=clip_count,
        lb=(static_count >= 2) & has_clips,
        ar_label=np.where((task == "ar") & has_clips & (action >= 0), action, -1),
        tad=tad,
        tad_segments=tuple(tad_segments),
        ad_label=np.where(has_clips & (anomaly >= 0), anomaly, -1),
    )


def labelled_tasks(roles: VideoRoles) -> dict[str, str]:
    """Per task, why it cannot be co-trained on these videos ("" when it can)."""
    n_seg = sum(len(s) for s, t in zip(roles.tad_segments, roles.tad, strict=True) if t)
    ad = roles.ad_label[roles.ad_label >= 0]
    return {
        "ar": "" if (roles.ar_label >= 0).any() else "no trimmed video with an action label",
        "tad": "" if n_seg else "no untrimmed (task tad) video with action segments",
        "ad": "" if {0, 1} <= set(ad.tolist()) else "needs both normal and abnormal videos",
    }


# --- latents on the host ----------------------------------------------------------------


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each (s, c), vectorised."""
    counts = np.asarray(counts, np.int64)
    first = np.asarray(starts, np.int64) - np.cumsum(counts) + counts
    return np.repeat(first, counts) + np.arange(int(counts.sum()), dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class Latents:
    """Raw features of a set of videos, re-indexed from 0 (arrays aligned with ``rows``)."""

    rows: np.ndarray
    static: np.ndarray  # [S, D] float32
    static_start: np.ndarray
    static_count: np.ndarray
    clips: np.ndarray  # [C, D] float32
    clip_start: np.ndarray
    clip_count: np.ndarray
    clip_frame_start: np.ndarray | None = None  # [C] first decoded frame of each clip


def latent_bytes(roles: VideoRoles, dim: int) -> int:
    """float32 bytes of the static and clip features of these videos."""
    return int((roles.static_count.sum() + roles.clip_count.sum()) * dim * 4)


def read_latents(store: Any, rows: np.ndarray, *, frames: bool = False) -> Latents:
    """Read the static and clip features of ``rows`` (grouped by part, part by part).

    Each part is opened with its own handle, so this is safe to call from a prefetch
    thread while the main thread trains. The output order is by part, then as given.
    """
    v = store.videos.loc[np.asarray(rows, np.int64)]
    counts = store.part_counts
    offsets = {
        t: dict(zip(store.part_names, np.cumsum([0] + [c[t] for c in counts]), strict=False))
        for t in ("static", "clips")
    }
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("rows", "static", "clips", "sc", "cc")}
    frame_starts = []
    for name, pv in v.groupby("part", sort=False):
        part = store.open_part(name)  # its own checked handle: safe beside other threads
        try:
            for table, key, arr, tag in (
                ("static", "static", "static_features", "sc"),
                ("clips", "clip", "clip_features", "cc"),
            ):
                start = pv[f"{key}_start"].to_numpy(np.int64) - offsets[table][name]
                count = pv[f"{key}_count"].to_numpy(np.int64)
                lo = int(start.min()) if len(start) else 0
                hi = int((start + count).max()) if len(start) else 0
                # a ten-crop store trains on its centre crop (FeatureStore.crop_view)
                block = store.crop_view(np.asarray(part[arr][lo:hi], dtype=np.float32))
                out[table].append(block[_ranges(start - lo, count)])
                out[tag].append(count)
                if frames and table == "clips":
                    fr = np.asarray(part["clip_frames"][lo:hi]).reshape(-1, 2)
                    frame_starts.append(fr[_ranges(start - lo, count), 0].astype(np.int64))
        finally:
            part.close()
        out["rows"].append(pv["row"].to_numpy(np.int64))
    dim = store.feature_dim
    cat = {k: (np.concatenate(x) if x else None) for k, x in out.items()}
    sc = cat["sc"] if cat["sc"] is not None else np.zeros(0, np.int64)
    cc = cat["cc"] if cat["cc"] is not None else np.zeros(0, np.int64)
    return Latents(
        rows=cat["rows"] if cat["rows"] is not None else np.zeros(0, np.int64),
        static=cat["static"] if cat["static"] is not None else np.zeros((0, dim), np.float32),
        static_start=np.cumsum(sc) - sc,
        static_count=sc,
        clips=cat["clips"] if cat["clips"] is not None else np.zeros((0, dim), np.float32),
        clip_start=np.cumsum(cc) - cc,
        clip_count=cc,
        clip_frame_start=np.concatenate(frame_starts) if frame_starts else None,
    )


# --- latents on the device --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainData:
    """Everything a training step reads, as tensors on one device.

    Index tensors point into ``static`` and ``clips``. ``lb_*`` describe the L_B videos,
    ``ar_*``/``tad_*``/``ad_*`` each task's videos (empty when the task is not trained).
    """

    static: Tensor
    clips: Tensor
    lb_static_start: Tensor
    lb_static_count: Tensor
    lb_clip_start: Tensor
    lb_clip_count: Tensor
    ar_clip_start: Tensor
    ar_clip_count: Tensor
    ar_label: Tensor
    tad_clip_start: Tensor
    tad_clip_count: Tensor
    tad_gt: Tensor  # [N_tad, G, 3]: start_t, end_t, label (-1 = padding)
    tad_len: int  # window length in timesteps for this data
    ad_lo: Tensor  # [N_ad, 32] first clip of each RTFM segment
    ad_hi: Tensor  # [N_ad, 32] one past its last clip (at least lo + 1)
    ad_label: Tensor
    videos: int  # L_B videos

    def count(self, task: str) -> int:
        return int(
            {"ar": self.ar_label, "tad": self.tad_clip_start, "ad": self.ad_label}[task].shape[0]
        )

    def to(self, device: torch.device) -> TrainData:
        """Copy to ``device`` (asynchronous from pinned memory)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                moved[f.name] = value.to(device, non_blocking=True)
        return replace(self, **moved)

    def pin_memory(self) -> TrainData:
        pinned = {
            f.name: getattr(self, f.name).pin_memory()
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **pinned)


def _t(a: Any, dtype: torch.dtype = torch.int64) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)


def build_train_data(
    latents: Latents, roles: VideoRoles, tasks: Sequence[str], *, tad_window: int
) -> TrainData:
    """Assemble host tensors for one chunk: ``roles`` must be aligned with ``latents.rows``."""
    if not np.array_equal(latents.rows, roles.rows):
        raise ValueError("roles and latents must list the same videos in the same order")
    lb = np.flatnonzero(roles.lb)
    ar = np.flatnonzero(roles.in_task("ar")) if "ar" in tasks else np.zeros(0, np.int64)
    tad = np.flatnonzero(roles.in_task("tad")) if "tad" in tasks else np.zeros(0, np.int64)
    ad = np.flatnonzero(roles.in_task("ad")) if "ad" in tasks else np.zeros(0, np.int64)
    cs, cc = latents.clip_start, latents.clip_count
    segs = [roles.tad_segments[i] for i in tad]
    g = max([1, *(len(s) for s in segs)])
    gt = np.full((len(tad), g, 3), -1.0, np.float32)
    for i, s in enumerate(segs):
        gt[i, : len(s)] = s
    tad_len = int(min(tad_window, cc[tad].max())) if len(tad) else 1
    lo = np.zeros((len(ad), N_SEGMENTS), np.int64)
    hi = np.zeros((len(ad), N_SEGMENTS), np.int64)
    for i, v in enumerate(ad):
        # RTFM process_feat boundaries; an empty range takes its start clip alone
        r = np.linspace(0, cc[v], N_SEGMENTS + 1).astype(np.int64)
        lo[i] = cs[v] + r[:-1]
        hi[i] = cs[v] + np.maximum(r[1:], r[:-1] + 1)
    return TrainData(
        static=torch.from_numpy(np.ascontiguousarray(latents.static, np.float32)),
        clips=torch.from_numpy(np.ascontiguousarray(latents.clips, np.float32)),
        lb_static_start=_t(latents.static_start[lb]),
        lb_static_count=_t(latents.static_count[lb]),
        lb_clip_start=_t(cs[lb]),
        lb_clip_count=_t(cc[lb]),
        ar_clip_start=_t(cs[ar]),
        ar_clip_count=_t(cc[ar]),
        ar_label=_t(roles.ar_label[ar]),
        tad_clip_start=_t(cs[tad]),
        tad_clip_count=_t(cc[tad]),
        tad_gt=_t(gt, torch.float32),
        tad_len=tad_len,
        ad_lo=_t(lo),
        ad_hi=_t(hi),
        ad_label=_t(roles.ad_label[ad]),
        videos=len(lb),
    )


# --- chunks (streaming) -----------------------------------------------------------------


def plan_chunks(
    part_bytes: Sequence[int],
    order: Sequence[int],
    budget: int,
    part_videos: Sequence[int] | None = None,
    min_videos: int = 0,
) -> list[list[int]]:
    """Group parts, visited in ``order``, into chunks of at most ``budget`` bytes.

    A chunk is only closed once it holds ``min_videos`` videos (``part_videos`` per part),
    so every chunk fills a whole batch; a short last chunk joins the previous one. A part
    larger than the budget forms a chunk of its own.
    """
    videos = part_videos if part_videos is not None else [0] * len(part_bytes)
    chunks: list[list[int]] = []
    sizes: list[list[int]] = []  # [bytes, videos] per chunk
    for p in order:
        b, v = int(part_bytes[p]), int(videos[p])
        if chunks and (sizes[-1][0] + b <= budget or sizes[-1][1] < min_videos):
            chunks[-1].append(int(p))
            sizes[-1][0] += b
            sizes[-1][1] += v
        else:
            chunks.append([int(p)])
            sizes.append([b, v])
    if len(chunks) > 1 and sizes[-1][1] < min_videos:
        chunks[-2].extend(chunks.pop())
    return chunks


def prefetched(load: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
    """Yield ``load(item)`` for each item, loading the next one in a background thread."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aamflow-prefetch") as pool:
        future = pool.submit(load, items[0])
        for i in range(len(items)):
            result = future.result()
            if i + 1 < len(items):
                future = pool.submit(load, items[i + 1])
            yield result


# --- on-device samplers -----------------------------------------------------------------


class StepPlan(NamedTuple):
    """Host integers that fix every tensor shape of an epoch over one ``TrainData``."""

    steps: int
    batch: int  # L_B videos per step
    per_task: dict[str, int]  # task videos per step


def plan_steps(data: TrainData, batch_size: int, tasks: Sequence[str]) -> StepPlan:
    """``videos // batch`` steps (the last partial batch is dropped, as in SimCLR); each
    task draws ``ceil(n_task / steps)`` of its videos per step so that every task video
    is seen at least once per epoch."""
    batch = max(2, min(batch_size, data.videos))
    steps = max(1, data.videos // batch)
    per_task = {t: math.ceil(data.count(t) / steps) for t in tasks if data.count(t)}
    return StepPlan(steps=steps, batch=batch, per_task=per_task)


def _uniform_index(u: Tensor, n: Tensor) -> Tensor:
    """``floor(u * n)`` clamped to ``n - 1``: a uniform draw from ``range(n)`` per entry."""
    return torch.minimum((u * n).long(), n - 1)


def epoch_orders(data: TrainData, plan: StepPlan, gen: torch.Generator) -> dict[str, Tensor]:
    """Per set, a ``[steps, per_step]`` tensor of video positions for the whole epoch."""
    device = data.static.device
    n = plan.steps * plan.batch
    orders = {"lb": torch.randperm(data.videos, generator=gen, device=device)[:n]}
    for task, per_step in plan.per_task.items():
        count = data.count(task)
        need = plan.steps * per_step
        reps = math.ceil(need / count)
        perms = [torch.randperm(count, generator=gen, device=device) for _ in range(reps)]
        orders[task] = torch.cat(perms)[:need]
    return {k: v.view(plan.steps, -1) for k, v in orders.items()}


class StepBatch(NamedTuple):
    """Inputs of one step. ``x`` stacks every latent the AAM sees: ``[static_a; static_b;
    lc clips; ar clips; tad windows; ad segment clips]``, sizes in ``sizes``; ``lc_weight``
    marks the rows that count in L_LC (padded TAD timesteps do not)."""

    x: Tensor
    sizes: dict[str, int]
    lc_weight: Tensor
    ar_label: Tensor | None
    tad_mask: Tensor | None  # [b, L] real timesteps
    tad_gt: Tensor | None  # [b, G, 3] shifted into the window
    ad_label: Tensor | None


def sample_step(
    data: TrainData, orders: dict[str, Tensor], k: int, gen: torch.Generator
) -> StepBatch:
    """Draw step ``k``'s latents on the device: two distinct static clips and one clip per
    L_B video, one clip per AR video, a window per TAD video, one clip per RTFM segment
    per AD video (an unbiased draw of the segment mean; memory stays fixed)."""
    device = data.static.device
    idx = orders["lb"][k]
    b = idx.shape[0]
    u = torch.rand(3, b, generator=gen, device=device)
    cnt = data.lb_static_count[idx]
    first = _uniform_index(u[0], cnt)
    # the second static clip is uniform over the other cnt - 1 clips of the video
    second = (first + 1 + _uniform_index(u[1], cnt - 1)) % cnt
    start = data.lb_static_start[idx]
    lc = data.lb_clip_start[idx] + _uniform_index(u[2], data.lb_clip_count[idx])
    parts = [data.static[start + first], data.static[start + second], data.clips[lc]]
    sizes = {"static_a": b, "static_b": b, "lc": b}
    weights = [torch.ones(3 * b, device=device)]
    ar_label = tad_mask = tad_gt = ad_label = None
    if "ar" in orders:
        a = orders["ar"][k]
        ua = torch.rand(a.shape[0], generator=gen, device=device)
        parts.append(data.clips[data.ar_clip_start[a] + _uniform_index(ua, data.ar_clip_count[a])])
        sizes["ar"] = a.shape[0]
        weights.append(torch.ones(a.shape[0], device=device))
        ar_label = data.ar_label[a]
    if "tad" in orders:
        t = orders["tad"][k]
        length = data.tad_len
        count = data.tad_clip_count[t]
        ut = torch.rand(t.shape[0], generator=gen, device=device)
        offset = _uniform_index(ut, (count - length).clamp_min(0) + 1)
        pos = offset[:, None] + torch.arange(length, device=device)
        tad_mask = pos < count[:, None]
        clip = data.tad_clip_start[t][:, None] + torch.minimum(pos, count[:, None] - 1)
        parts.append(data.clips[clip.flatten()])
        sizes["tad"] = clip.numel()
        weights.append(tad_mask.flatten().float())
        gt = data.tad_gt[t].clone()
        off = offset[:, None].float()
        gt[..., 0] -= off
        gt[..., 1] -= off
        inside = (gt[..., 2] >= 0) & (gt[..., 1] >= 0) & (gt[..., 0] <= length - 1)
        gt[..., 2] = torch.where(inside, gt[..., 2], torch.full_like(gt[..., 2], -1.0))
        tad_gt = gt
    if "ad" in orders:
        a = orders["ad"][k]
        lo, hi = data.ad_lo[a], data.ad_hi[a]
        ud = torch.rand(lo.shape, generator=gen, device=device)
        clip = lo + _uniform_index(ud, hi - lo)
        parts.append(data.clips[clip.flatten()])
        sizes["ad"] = clip.numel()
        weights.append(torch.ones(clip.numel(), device=device))
        ad_label = data.ad_label[a]
    return StepBatch(
        x=torch.cat(parts),
        sizes=sizes,
        lc_weight=torch.cat(weights),
        ar_label=ar_label,
        tad_mask=tad_mask,
        tad_gt=tad_gt,
        ad_label=ad_label,
    )
