"""Decode videos into clip chunks, in loader worker processes.

Frames are decoded in order and cropped one at a time (``crop``: the geometric, uint8 half
of the encoder's preprocessing) into a small sliding buffer, so memory is bounded by one
chunk of clips, whatever the video's length. Each video becomes a sequence of messages:
``info``, ``clips`` chunks (at most ``chunk`` clips each), ``static``, and ``done`` — or
``error`` when it cannot be decoded.

A ``clips`` or ``static`` message carries each distinct frame once, ``pixels`` uint8
``[U, 3, S, S]``, and ``gather`` int64 ``[n, T]``, the rows of ``pixels`` that make each
clip: overlapping dense windows share frames and a static clip is one frame ``T`` times, so
this ships several times fewer bytes than the clips themselves. The consumer gathers
``pixels[gather]`` (and normalises) on the encoder's device.

With ``sampling.crops = 10`` the ``crop`` callable returns a frame's ten views (rows
``10 f .. 10 f + 9`` of ``pixels`` for distinct frame ``f``), and ``gather`` has ten rows per
clip, clip-major: the encoder sees each view as one clip and the consumer reshapes its
``[n * 10, D]`` output to ``[n, 10, D]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aamflow.schemas.manifest import Sampling

from .decode import VideoDecodeError, iter_frames, probe_video
from .sampling import plan_clips, plan_static


@dataclass(frozen=True)
class VideoJob:
    """One video to decode: its position in the part and where it lives."""

    index: int
    path: str
    task: str


def crop_rows(gather: np.ndarray, crops: int) -> np.ndarray:
    """Each clip's rows of distinct frames ``[n, T]`` as the rows of its ``crops`` views
    ``[n * crops, T]`` (clip-major), where ``pixels`` holds each frame's views consecutively."""
    if crops == 1:
        return gather
    views = gather[:, None, :] * crops + np.arange(crops, dtype=gather.dtype)[None, :, None]
    return views.reshape(-1, gather.shape[1])


def _decode_messages(
    job: VideoJob,
    sampling: Sampling,
    crop: Callable[[np.ndarray], torch.Tensor],
    decoder: str,
    chunk: int,
    num_frames: int | None = None,
) -> Iterator[dict[str, Any]]:
    path = Path(job.path)
    crops = sampling.crops
    info = probe_video(path, decoder)
    n = num_frames or info.num_frames
    plan = plan_clips(n, sampling, job.task)
    static_frames = plan_static(n, sampling.static_per_video, sampling.clip_len)
    needed = np.unique(np.concatenate([plan.frame_idx.ravel(), static_frames]))
    # the last clip that uses each frame: frames are dropped from the buffer after it
    last_use = np.full(n, -1, np.int64)
    np.maximum.at(
        last_use, plan.frame_idx.ravel(), np.repeat(np.arange(len(plan)), plan.frame_idx.shape[1])
    )
    buf: dict[int, torch.Tensor] = {}
    times: dict[int, float] = {}
    static: dict[int, torch.Tensor] = {}
    static_set = set(static_frames.tolist())
    used_decoder = decoder
    next_clip = 0
    pending: list[int] = []
    yield {
        "kind": "info",
        "index": job.index,
        "num_frames": n,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
    }

    def emit(clips: list[int]) -> dict[str, Any]:
        sel = np.asarray(clips)
        idx = plan.frame_idx[sel]  # [n, T]
        # each distinct frame is shipped once (dense windows overlap: one frame belongs to
        # up to clip_len / dense_stride clips); the consumer gathers the clips
        uniq, inverse = np.unique(idx, return_inverse=True)
        t0 = np.array([times[int(plan.frame_idx[c][0])] for c in clips])
        t1 = np.array([times[int(plan.frame_idx[c][-1])] for c in clips]) + 1.0 / info.fps
        return {
            "kind": "clips",
            "index": job.index,
            "pixels": torch.cat([buf[int(f)] for f in uniq]),  # [U, 3, S, S] uint8
            "gather": crop_rows(inverse.reshape(idx.shape).astype(np.int64), crops),
            "frame_idx": plan.frame_idx[sel],
            "frames": np.stack([plan.start[sel], plan.end[sel]], 1),
            "time": np.stack([t0, t1], 1),
            "padded": plan.padded[sel],
        }

    for frame in iter_frames(path, needed, decoder):
        used_decoder = frame.decoder
        f = frame.index
        # [crops, 3, S, S] uint8 (transforms are per frame); compact, not a view of the frame
        x = crop(frame.rgb[None]).contiguous()
        buf[f] = x
        times[f] = frame.time
        if f in static_set:
            static[f] = x
        # clips whose last frame has arrived are complete
        while next_clip < len(plan) and plan.frame_idx[next_clip].max() <= f:
            pending.append(next_clip)
            next_clip += 1
            if len(pending) >= chunk:
                yield emit(pending)
                pending = []
                _drop_unused(buf, last_use, next_clip)
    if pending:
        yield emit(pending)
    if next_clip < len(plan):
        raise VideoDecodeError(path, f"decoded only up to clip {next_clip} of {len(plan)}")
    # a static clip is one frame tiled clip_len times: ship the frame, gather it T times
    uniq, inverse = np.unique(static_frames, return_inverse=True)
    yield {
        "kind": "static",
        "index": job.index,
        "pixels": torch.cat([static[int(f)] for f in uniq]),
        "gather": crop_rows(
            np.repeat(inverse.reshape(-1, 1).astype(np.int64), sampling.clip_len, 1), crops
        ),
        "frame": static_frames,
    }
    yield {"kind": "done", "index": job.index, "decoder": used_decoder}


def _drop_unused(buf: dict[int, torch.Tensor], last_use: np.ndarray, next_clip: int) -> None:
    # static frames live in their own dict, so the clip buffer only keeps frames ahead
    for f in [f for f in buf if last_use[f] < next_clip]:
        del buf[f]


def video_messages(
    job: VideoJob,
    sampling: Sampling,
    crop: Callable[[np.ndarray], torch.Tensor],
    decoder: str,
    chunk: int,
) -> Iterator[dict[str, Any]]:
    """All messages for one video; a failure becomes ``reset`` + ``error`` messages.

    A truncated video whose first frames decode is retried once with the decodable count,
    after a ``reset`` that tells the consumer to drop what it received for the video.
    """
    try:
        yield from _decode_messages(job, sampling, crop, decoder, chunk)
        return
    except VideoDecodeError as e:
        error, retry = str(e), e.decodable
    except Exception as e:  # any decoder crash is recorded on the video, never fatal
        error, retry = f"{type(e).__name__}: {e}", None
    yield {"kind": "reset", "index": job.index}
    if retry:
        try:
            yield from _decode_messages(job, sampling, crop, decoder, chunk, num_frames=retry)
            return
        except Exception as e:  # noqa: BLE001
            error = f"{error}; retry with {retry} frames failed: {e}"
            yield {"kind": "reset", "index": job.index}
    yield {"kind": "error", "index": job.index, "error": " ".join(error.split())}


class VideoStream(torch.utils.data.IterableDataset):
    """Messages for a list of videos; with several loader workers, videos are split round
    robin and the consumer reorders them by ``index``."""

    def __init__(
        self,
        jobs: list[VideoJob],
        sampling: Sampling,
        crop: Callable[[np.ndarray], torch.Tensor],
        decoder: str,
        chunk: int,
    ) -> None:
        self.jobs = jobs
        self.sampling = sampling
        self.crop = crop
        self.decoder = decoder
        self.chunk = chunk

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for k, job in enumerate(self.jobs):
            if k % nw == wid:
                yield from video_messages(job, self.sampling, self.crop, self.decoder, self.chunk)


def stream_videos(
    jobs: list[VideoJob],
    sampling: Sampling,
    crop: Callable[[np.ndarray], torch.Tensor],
    *,
    decoder: str = "auto",
    chunk: int = 64,
    workers: int = 1,
) -> Iterator[dict[str, Any]]:
    """Messages for ``jobs``, decoded in ``workers`` background processes (0 = inline)."""
    ds = VideoStream(jobs, sampling, crop, decoder, chunk)
    if workers == 0:
        yield from ds
        return
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        num_workers=min(workers, max(1, len(jobs))),
        prefetch_factor=4,
        persistent_workers=False,
    )
    yield from loader
