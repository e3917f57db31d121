"""Clip sampling: which decoded frames make each clip and each static clip of a video.

A clip is ``clip_len`` frames taken every ``frame_stride`` frames, so it spans
``(clip_len - 1) * frame_stride + 1`` source frames. Clip starts step by ``clip_stride`` for
trimmed videos (task ``ar``; non-overlapping uniform clips by default, as the paper stores
them) and by ``dense_stride`` for untrimmed ones (``tad``, ``ad``; sliding windows). Starts
are ``range(0, num_frames - span + 1, step)``, the VideoMAEv2 / ActionFormer convention: no
tail padding, the last frames that do not fill a window are not covered. A video shorter
than one span gives a single clip padded by repeating its last sampled frame.

A static clip is one frame tiled ``clip_len`` times; its frames are spread evenly through
the video (centres of ``static_per_video`` equal bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.manifest import Sampling

TRIMMED_TASKS = ("ar",)
UNTRIMMED_TASKS = ("tad", "ad")


@dataclass(frozen=True, kw_only=True)
class ClipPlan:
    """The clips of one video.

    Attributes
    ----------
    frame_idx : int64 ``[N, clip_len]``, decoded frame index of every clip frame.
    start, end : int64 ``[N]``, source frame range of each clip, ``end`` exclusive.
    padded : bool ``[N]``, True for a clip padded because the video is shorter than a span.
    """

    frame_idx: np.ndarray
    start: np.ndarray
    end: np.ndarray
    padded: np.ndarray

    @property
    def num_clips(self) -> int:
        return int(self.frame_idx.shape[0])

    def __len__(self) -> int:
        return self.num_clips

    def select(self, lo: int, hi: int) -> ClipPlan:
        """Clips ``lo:hi`` as a plan of their own."""
        return ClipPlan(
            frame_idx=self.frame_idx[lo:hi],
            start=self.start[lo:hi],
            end=self.end[lo:hi],
            padded=self.padded[lo:hi],
        )


def clip_span(clip_len: int, frame_stride: int) -> int:
    """Source frames covered by one clip."""
    return (clip_len - 1) * frame_stride + 1


def clip_step(sampling: Sampling, task: str) -> int:
    """Start-to-start step of clips for a video of this task."""
    if task in TRIMMED_TASKS:
        return sampling.clip_stride
    if task in UNTRIMMED_TASKS:
        return sampling.dense_stride
    valid = ", ".join(TRIMMED_TASKS + UNTRIMMED_TASKS)
    raise ConfigError(f"unknown video task {task!r}; valid: {valid}")


def plan_clips(num_frames: int, sampling: Sampling, task: str) -> ClipPlan:
    """The clips of a ``num_frames``-frame video of ``task`` (``ar``, ``tad`` or ``ad``)."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame to sample clips, got {num_frames}")
    step = clip_step(sampling, task)
    t, s = sampling.clip_len, sampling.frame_stride
    span = clip_span(t, s)
    offsets = np.arange(t, dtype=np.int64) * s
    if num_frames >= span:
        start = np.arange(0, num_frames - span + 1, step, dtype=np.int64)
        return ClipPlan(
            frame_idx=start[:, None] + offsets[None, :],
            start=start,
            end=start + span,
            padded=np.zeros(len(start), dtype=bool),
        )
    taken = np.arange(0, num_frames, s, dtype=np.int64)
    frames = np.concatenate([taken, np.full(t - len(taken), taken[-1], dtype=np.int64)])
    return ClipPlan(
        frame_idx=frames[None, :],
        start=np.zeros(1, dtype=np.int64),
        end=np.full(1, num_frames, dtype=np.int64),
        padded=np.ones(1, dtype=bool),
    )


def plan_static(num_frames: int, static_per_video: int, clip_len: int) -> np.ndarray:
    """The frame index of each static clip: centres of ``static_per_video`` equal bins.

    Always ``static_per_video`` entries (repeats when the video has fewer frames), so every
    video contributes the same number of static clips. ``clip_len`` is the tiling length of
    a static clip; it does not change which frames are chosen.
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be positive, got {clip_len}")
    k = np.arange(static_per_video, dtype=np.float64)
    idx = np.floor((k + 0.5) * num_frames / max(static_per_video, 1)).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def static_clip_indices(static_frames: np.ndarray, clip_len: int) -> np.ndarray:
    """int64 ``[K, clip_len]``: each static frame tiled ``clip_len`` times."""
    return np.repeat(np.asarray(static_frames, dtype=np.int64)[:, None], clip_len, axis=1)
