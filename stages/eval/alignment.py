"""Frame-level anomaly ground truth aligned to clips, as RTFM / MGFN / UR-DMU evaluate.

Those tools score one value per clip (segment), repeat it ``frames_per_segment`` times
(``np.repeat(pred, 16)``) and compare with a frame-label vector of length ``T * 16`` per video.
Our dense clips overlap (``dense_stride < clip_len``), so ``T * 16`` is not the video's frame
count; the ground truth must be built *per clip*:

- clip ``i`` contributes ``frames_per_segment`` labels: the labels of the frames it was
  decoded from (``clip_frame_idx[i]``, its ``clip_len`` sampled frame indices). When
  ``frames_per_segment != clip_len`` the sampled frames are picked evenly
  (position ``floor((k + 0.5) * clip_len / frames_per_segment)``).
- a frame index past the end of the stored labels takes the last label; a negative
  (unknown) frame label counts as normal (0).
- a video without stored frame labels gets its video-level label on every frame.

So ``np.repeat(clip_scores, frames_per_segment)`` and this vector line up one to one, and a
clip's score is judged against exactly the frames it saw.
"""

from __future__ import annotations

import numpy as np

RTFM_FRAMES_PER_SEGMENT = 16
"""RTFM, MGFN and UR-DMU hard-code ``np.repeat(pred, 16)`` at test time."""


def clip_frame_labels(
    frame_labels: np.ndarray,
    clip_frame_idx: np.ndarray,
    frames_per_segment: int,
    video_label: int = 0,
) -> np.ndarray:
    """int8 ``[T * frames_per_segment]``: the frame labels each clip covers, clip after clip.

    Parameters
    ----------
    frame_labels : int array [num_frames]
        The video's per-frame anomaly labels (1 abnormal, 0 normal, -1 unknown); may be empty.
    clip_frame_idx : int array [T, clip_len]
        The decoded frame indices of each of the video's clips.
    frames_per_segment : int
        Labels per clip (the repeat factor of the clip scores).
    video_label : int
        Used for every frame when ``frame_labels`` is empty.
    """
    idx = np.asarray(clip_frame_idx, dtype=np.int64)
    if idx.ndim != 2:
        raise ValueError(f"clip_frame_idx must be [T, clip_len], got shape {idx.shape}")
    t, clip_len = idx.shape
    if frames_per_segment == clip_len:
        pos = np.arange(clip_len)
    else:
        pos = np.floor((np.arange(frames_per_segment) + 0.5) * clip_len / frames_per_segment)
        pos = pos.astype(np.int64)
    labels = np.asarray(frame_labels).ravel()
    if labels.size == 0:
        return np.full(t * frames_per_segment, int(video_label > 0), dtype=np.int8)
    picked = labels[np.clip(idx[:, pos], 0, labels.size - 1)]
    return (picked > 0).astype(np.int8).reshape(-1)
