"""Stores of random features with known structure, for tests and benchmarks.

``fake_store`` writes a complete store without decoding any video: each video gets an
action, a few private attributes and (for untrimmed videos) segments, and its features are
noise plus planted class directions, so probes have something to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import LabelSpaces, Sampling
from .store import (
    VideoRecord,
    create_store,
    index_store,
    new_store_attrs,
    open_part_writer,
    plan_parts,
)

FAKE_SPACES = LabelSpaces(
    actions=("walk", "jump", "wave", "spin"),
    attributes={"skin_tone": ("light", "medium", "dark"), "gender": ("f", "m")},
    groups=("f", "m"),
)


def fake_store(
    path: str | Path,
    *,
    n_videos: int = 24,
    dim: int = 32,
    clips_per_video: int = 6,
    static_per_video: int = 4,
    part_size: int = 8,
    seed: int = 0,
    fmt: str | None = None,
    tasks: tuple[str, ...] = ("ar", "tad", "ad"),
    leak: float = 2.0,
    encoder_name: str = "fake",
    crops: int = 1,
) -> Path:
    """Write a complete fake store and return its path.

    Videos cycle through ``tasks``; splits are 60/20/20 by row. Attribute directions are
    planted in both clip and static features with strength ``leak``; the action direction
    only in clip features (static clips carry no motion). With ``crops`` 10 every clip and
    static clip gets ten views: the one-crop features plus small per-view noise (the centre
    view, index 4, is the one-crop feature itself).
    """
    rng = np.random.default_rng(seed)
    sampling = Sampling(
        clip_len=16,
        clip_stride=16,
        dense_stride=16,
        static_per_video=static_per_video,
        crops=crops,
    )
    plan = plan_parts(n_videos, part_size)
    encoder = {"name": encoder_name, "dim": dim, "weights_digest": "sha256:fake", "clip_len": 16}
    attrs = new_store_attrs(encoder=encoder, sampling=sampling, label_spaces=FAKE_SPACES, plan=plan)
    p = Path(path)
    create_store(p, attrs, fmt=fmt)
    dirs = rng.normal(size=(16, dim)).astype(np.float32)
    view_rng = np.random.default_rng([seed, 10])  # its own stream: one-crop bytes unchanged
    for part in plan:
        with open_part_writer(p, part) as writer:
            for row in range(part.start, part.stop):
                rec = _fake_video(
                    rng, row, n_videos, dim, clips_per_video, static_per_video, tasks, dirs, leak
                )
                if crops > 1:
                    rec.clip_features = _views(view_rng, rec.clip_features, crops)
                    rec.static_features = _views(view_rng, rec.static_features, crops)
                writer.add(rec)
            writer.commit()
    index_store(p)
    return p


def _views(rng: np.random.Generator, x: np.ndarray, crops: int) -> np.ndarray:
    """``[n, D]`` -> ``[n, crops, D]``: per-view noise around ``x``, the centre view exact."""
    from .layout import view_crop

    out = x[:, None, :] + 0.1 * rng.normal(size=(x.shape[0], crops, x.shape[1]))
    out[:, view_crop(crops)] = x
    return out.astype(np.float32)


def _fake_video(rng, row, n_videos, dim, n_clips, n_static, tasks, dirs, leak) -> VideoRecord:
    task = tasks[row % len(tasks)]
    split = "train" if row < 0.6 * n_videos else ("val" if row < 0.8 * n_videos else "test")
    action = int(rng.integers(len(FAKE_SPACES.actions)))
    skin = int(rng.integers(3))
    gender = int(rng.integers(2))
    fps = 16.0
    num_frames = n_clips * 16
    base = leak * (dirs[skin] + dirs[3 + gender])
    clips = rng.normal(size=(n_clips, dim)).astype(np.float32) + base + leak * dirs[6 + action]
    static = rng.normal(size=(n_static, dim)).astype(np.float32) + base
    starts = np.arange(n_clips) * 16
    frames = np.stack([starts, starts + 16], 1)
    segments: list[tuple[int, float, float]] = []
    anomaly = -1
    frame_labels = None
    if task == "tad":
        segments = [(action, 1.0, 3.0)]
    if task == "ad":
        anomaly = int(row % 2)
        frame_labels = np.zeros(num_frames, np.int8)
        if anomaly:
            frame_labels[num_frames // 2 :] = 1
    return VideoRecord(
        row=row,
        id=f"v{row:05d}",
        path=f"videos/v{row:05d}.mp4",
        split=split,
        task=task,
        num_frames=num_frames,
        fps=fps,
        duration=num_frames / fps,
        width=64,
        height=64,
        decoder="fake",
        labels={
            "label_action": action if task == "ar" else -1,
            "label_anomaly": anomaly,
            "label_group": gender,
            "label_attr_skin_tone": skin,
            "label_attr_gender": gender,
        },
        clip_features=clips,
        clip_frames=frames,
        clip_time=frames / fps,
        clip_frame_idx=starts[:, None] + np.arange(16)[None, :],
        clip_padded=np.zeros(n_clips, np.int8),
        static_features=static,
        static_frame=np.linspace(0, num_frames - 1, n_static).astype(np.int64),
        segments=segments,
        frame_labels=frame_labels,
    )
