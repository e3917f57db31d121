"""Video decoding: probe a video and read chosen frames as RGB uint8 with their timestamps.

Decoders are registered in :data:`DECODERS`:

- ``decord``: the card's default, fast random access; unmaintained and known to return
  wrong frames on some B-frame/VFR streams (MPEG-TS with B-frames is one such case).
- ``pyav``: the maintained fallback (FFmpeg through PyAV); decodes sequentially and seeks
  to a keyframe only when that skips work.
- ``auto``: decord, checked against PyAV on the first and last requested frames; a video
  decord cannot open or decodes differently is read with PyAV instead (logged).

Frame indices count frames in presentation order from 0. Timestamps are seconds from the
stream's start, so the first frame is at (about) 0 s whatever the container's offset.
Every failure a video can cause (missing, empty, corrupt, no video stream, index past the
decodable end) raises :class:`VideoDecodeError`, which the extract stage records.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from aamflow.schemas._registry import Registry, UnknownNameError
from aamflow.schemas.errors import AamflowError, ConfigError

log = logging.getLogger(__name__)

# frames decoded per decord call; bounds memory of a streamed read
_DECORD_BATCH = 32
# PyAV seeks only when some requested frames are this far apart
_SEEK_GAP = 32
# mean absolute difference (0-255) above which ``auto`` distrusts decord's frame
_AUTO_TOLERANCE = 3.0


class VideoDecodeError(AamflowError):
    """A video cannot be (fully) decoded.

    ``decodable`` is the number of leading frames known to decode when the failure is
    "past the end" of a stream whose header over-counts its frames, else None.
    """

    def __init__(self, path: str | os.PathLike, reason: str, *, decodable: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.decodable = decodable
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the keyword through DataLoader worker pickling
        return (_rebuild_error, (self.path, self.reason, self.decodable))


def _rebuild_error(path: str, reason: str, decodable: int | None) -> VideoDecodeError:
    return VideoDecodeError(path, reason, decodable=decodable)


@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """What a probe learns about a video's first video stream."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Frame:
    """One decoded frame: index, RGB uint8 pixels ``[H, W, 3]``, time (s), decoder used."""

    index: int
    rgb: np.ndarray
    time: float
    decoder: str


@dataclass(frozen=True, kw_only=True)
class Decoder:
    """A decoding backend: ``probe(path, threads)`` and ``iter_frames(path, indices, threads)``.

    ``iter_frames`` takes strictly increasing indices and yields one :class:`Frame` per index,
    in order; ``threads`` is the decoder's thread count (0 lets the library choose).
    """

    name: str
    probe: Callable[[Path, int], VideoInfo]
    iter_frames: Callable[[Path, np.ndarray, int], Iterator[Frame]]


DECODERS: Registry[Decoder] = Registry("decoder")


def get_decoder(name: str) -> Decoder:
    """The registered decoder ``name``; an unknown name is a :class:`ConfigError`."""
    try:
        return DECODERS.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"decoder: {e}") from None


def probe_video(path: str | os.PathLike, decoder: str = "auto", *, threads: int = 0) -> VideoInfo:
    """Frame count, fps, size and duration of a video's first video stream.

    ``num_frames`` comes from the container's frame index (decord) or header / packet count
    (PyAV); :func:`read_frames` raises with ``decodable`` set if fewer frames decode.
    """
    path = _check_file(path)
    return get_decoder(decoder).probe(path, threads)


def iter_frames(
    path: str | os.PathLike, indices: np.ndarray, decoder: str = "decord", *, threads: int = 0
) -> Iterator[Frame]:
    """Stream the frames at strictly increasing ``indices``, one :class:`Frame` each, in order.

    Memory stays bounded by a few frames, so long videos can be consumed incrementally.
    """
    dec = get_decoder(decoder)
    path = _check_file(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx[0] < 0 or np.any(np.diff(idx) <= 0)):
        raise ValueError("iter_frames needs non-negative, strictly increasing frame indices")
    if idx.size == 0:
        return iter(())
    return dec.iter_frames(path, idx, threads)


def read_frames(
    path: str | os.PathLike, indices: np.ndarray, decoder: str = "decord", *, threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames at ``indices`` (any order, repeats allowed) in one pass.

    Returns
    -------
    frames : np.ndarray
        uint8 ``[N, H, W, 3]`` RGB, row i is frame ``indices[i]``.
    timestamps : np.ndarray
        float64 ``[N]``, seconds from the stream start.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    uniq, inverse = np.unique(idx, return_inverse=True)
    got = list(iter_frames(path, uniq, decoder, threads=threads))
    if not got:
        raise ValueError("read_frames needs at least one index")
    frames = np.stack([f.rgb for f in got])
    times = np.array([f.time for f in got], dtype=np.float64)
    return frames[inverse], times[inverse]


# -- shared checks -------------------------------------------------------------------------


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(p, "file not found")
    if not p.is_file():
        raise VideoDecodeError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoDecodeError(p, "empty file (0 bytes)")
    return p


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    """Any decoded image (gray ``[H, W]``, ``[H, W, 1]``, RGBA) as contiguous RGB uint8."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] > 3:
        a = a[:, :, :3]
    return np.ascontiguousarray(a, dtype=np.uint8)


def _past_end(path: Path, index: int, available: int) -> VideoDecodeError:
    return VideoDecodeError(
        path,
        f"frame {index} requested but only {available} frames decode",
        decodable=available,
    )


# -- PyAV ----------------------------------------------------------------------------------


def _av_open(path: Path, threads: int):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(path, f"cannot open ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return container, stream


def _av_start(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _av_packet_table(container, stream) -> tuple[np.ndarray, np.ndarray] | None:
    """Presentation-ordered pts of every frame and whether each is a keyframe (demux only)."""
    pts, key = [], []
    for pkt in container.demux(stream):
        if pkt.size == 0:  # the flush packet
            continue
        if pkt.pts is None:
            return None
        pts.append(pkt.pts)
        key.append(pkt.is_keyframe)
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    return np.asarray(pts, dtype=np.int64)[order], np.asarray(key, dtype=bool)[order]


def _pyav_probe(path: Path, threads: int) -> VideoInfo:
    import av

    container, stream = _av_open(path, threads)
    try:
        n = int(stream.frames or 0)
        if n <= 0:  # no count in the header (MPEG-TS, MKV...): count packets, no decoding
            table = _av_packet_table(container, stream)
            n = 0 if table is None else len(table[0])
            if table is None:  # no pts at all: decode to count
                container.seek(0)
                n = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = n / fps if fps else 0.0
        cc = stream.codec_context
        info = VideoInfo(
            num_frames=n, fps=fps, width=int(cc.width), height=int(cc.height), duration=duration
        )
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot read stream ({type(e).__name__}: {e})") from None
    finally:
        container.close()
    if info.num_frames <= 0:
        raise VideoDecodeError(path, "no decodable frames", decodable=0)
    return info


class _SeekMiss(Exception):
    """A seek did not land where the packet table said; decode sequentially instead."""


def _pyav_iter(path: Path, indices: np.ndarray, threads: int) -> Iterator[Frame]:
    import av

    done = 0
    try:
        # Seeking only pays when it jumps over a keyframe; that needs the pts table.
        table = _pyav_table(path, threads) if np.diff(indices).max(initial=0) > _SEEK_GAP else None
        if table is not None:
            try:
                for frame in _pyav_seeking(path, indices, table, threads):
                    yield frame
                    done += 1
                return
            except _SeekMiss:  # imprecise seeking (MPEG-TS...): still correct, just slower
                log.debug("seeking is imprecise in %s; decoding sequentially", path)
        yield from _pyav_sequential(path, indices[done:], threads)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"decode failed ({type(e).__name__}: {e})") from None


def _pyav_table(path: Path, threads: int) -> tuple[np.ndarray, np.ndarray] | None:
    container, stream = _av_open(path, threads)
    try:
        return _av_packet_table(container, stream)
    finally:
        container.close()


def _frame(target: int, frame, start: int, tb: Fraction) -> Frame:
    t = float((frame.pts - start) * tb) if frame.pts is not None else float("nan")
    return Frame(target, _as_rgb(frame.to_ndarray(format="rgb24")), t, "pyav")


def _pyav_sequential(path: Path, indices: np.ndarray, threads: int) -> Iterator[Frame]:
    """Decode from the first frame; the frame index is the output order."""
    if indices.size == 0:
        return
    container, stream = _av_open(path, threads)
    tb, start = stream.time_base or Fraction(1, 1), _av_start(stream)
    try:
        want = iter(indices.tolist())
        target = next(want)
        count = 0
        for frame in container.decode(stream):
            if count == target:
                yield _frame(target, frame, start, tb)
                target = next(want, None)
                if target is None:
                    return
            count += 1
        raise _past_end(path, target, count)
    finally:
        container.close()


def _pyav_seeking(
    path: Path, indices: np.ndarray, table: tuple[np.ndarray, np.ndarray], threads: int
) -> Iterator[Frame]:
    """Decode forward, seeking to the keyframe before a target when that skips frames."""
    pts, key = table
    index_of = {int(p): i for i, p in enumerate(pts)}
    key_idx = np.flatnonzero(key) if key.any() else np.zeros(1, dtype=np.int64)
    container, stream = _av_open(path, threads)
    tb, start = stream.time_base or Fraction(1, 1), _av_start(stream)
    try:
        frames, pos = container.decode(stream), 0  # pos: index of the next frame out
        for target in indices.tolist():
            if target >= len(pts):
                raise _past_end(path, target, len(pts))
            k = int(key_idx[max(np.searchsorted(key_idx, target, side="right") - 1, 0)])
            if k > pos:
                container.seek(int(pts[k]), stream=stream, backward=True, any_frame=False)
                frames, pos = container.decode(stream), k
            for frame in frames:
                j = index_of.get(frame.pts) if frame.pts is not None else None
                if j is None or j > target:
                    raise _SeekMiss
                if j < pos:  # leading frames of an open GOP, before our keyframe
                    continue
                pos = j + 1
                if j == target:
                    yield _frame(target, frame, start, tb)
                    break
            else:  # ended early: a truncated stream or a seek past the data; let the
                raise _SeekMiss  # sequential decoder tell which
    finally:
        container.close()


# -- decord --------------------------------------------------------------------------------


_recent = threading.local()  # per thread: the last decord reader, reused by probe then read
_inherited: list = []  # readers a forked child got from its parent: never touched or freed


def _forget_reader_after_fork() -> None:
    # decord's decoder threads do not survive fork(); using or freeing the parent's reader
    # in a DataLoader worker aborts the process, so the child keeps it aside untouched
    if getattr(_recent, "reader", None) is not None:
        _inherited.append(_recent.reader)
    _recent.reader = None


os.register_at_fork(after_in_child=_forget_reader_after_fork)


def _decord_open(path: Path, threads: int):
    """A decord reader, reused when the same file is opened again by the same thread
    (opening indexes every packet, and extract probes, checks and reads each video)."""
    try:
        import decord
    except ImportError:
        raise ConfigError(
            "decoder 'decord' is not installed; pip install decord or use --decoder pyav"
        ) from None
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, threads)
    cached = getattr(_recent, "reader", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    _recent.reader = None  # drop the previous reader (and its file) first
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    except Exception as e:  # decord raises DECORDError/RuntimeError for anything it dislikes
        raise VideoDecodeError(path, f"decord cannot open ({type(e).__name__}: {e})") from None
    _recent.reader = (key, vr)
    return vr


def _decord_probe(path: Path, threads: int) -> VideoInfo:
    vr = _decord_open(path, threads)
    n = len(vr)
    if n <= 0:
        raise VideoDecodeError(path, "no decodable frames", decodable=0)
    fps = float(vr.get_avg_fps())
    h, w = vr[0].shape[:2]
    duration = float(vr.get_frame_timestamp(n - 1)[1])
    return VideoInfo(num_frames=n, fps=fps, width=int(w), height=int(h), duration=duration)


def _decord_iter(path: Path, indices: np.ndarray, threads: int) -> Iterator[Frame]:
    vr = _decord_open(path, threads)
    n = len(vr)
    for lo in range(0, len(indices), _DECORD_BATCH):
        batch = indices[lo : lo + _DECORD_BATCH]
        if batch[-1] >= n:
            batch = batch[batch < n]
            yield from _decord_batch(path, vr, batch)
            raise _past_end(path, int(indices[lo + len(batch)]), n)
        yield from _decord_batch(path, vr, batch)


def _decord_batch(path: Path, vr, batch: np.ndarray) -> Iterator[Frame]:
    if batch.size == 0:
        return
    try:
        arr = vr.get_batch(batch.tolist()).asnumpy()
        times = vr.get_frame_timestamp(batch.tolist())[:, 0]
    except Exception as e:
        raise VideoDecodeError(
            path, f"decord failed at frames {batch[0]}..{batch[-1]} ({type(e).__name__}: {e})"
        ) from None
    for i, img, t in zip(batch.tolist(), arr, times.tolist(), strict=True):
        yield Frame(i, _as_rgb(img), float(t), "decord")


# -- auto ----------------------------------------------------------------------------------


def _auto_probe(path: Path, threads: int) -> VideoInfo:
    try:
        return _decord_probe(path, threads)
    except (VideoDecodeError, ConfigError) as e:
        log.info("decord cannot probe %s (%s); using PyAV", path, e)
        return _pyav_probe(path, threads)


def _auto_iter(path: Path, indices: np.ndarray, threads: int) -> Iterator[Frame]:
    if not _decord_agrees(path, indices, threads):
        yield from _pyav_iter(path, indices, threads)
        return
    done = 0
    try:
        for frame in _decord_iter(path, indices, threads):
            yield frame
            done += 1
    except VideoDecodeError as e:
        log.warning("decord failed on %s (%s); PyAV reads the remaining frames", path, e.reason)
        yield from _pyav_iter(path, indices[done:], threads)


def _decord_agrees(path: Path, indices: np.ndarray, threads: int) -> bool:
    """Whether decord's first and last requested frames match PyAV's (catches bad seeking)."""
    check = np.unique(indices[[0, -1]])
    try:
        ours = [f.rgb for f in _decord_iter(path, check, threads)]
    except (VideoDecodeError, ConfigError) as e:
        log.warning("decord cannot read %s (%s); using PyAV", path, e)
        return False
    try:
        ref = [f.rgb for f in _pyav_iter(path, check, threads)]
    except VideoDecodeError:
        return True  # PyAV cannot check it; decord's answer is all we have
    for i, a, b in zip(check.tolist(), ours, ref, strict=True):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() if a.shape == b.shape else 255
        if diff > _AUTO_TOLERANCE:
            log.warning(
                "decord and PyAV disagree on frame %d of %s (mean abs diff %.1f); using PyAV",
                i,
                path,
                diff,
            )
            return False
    return True


DECODERS.register("pyav")(Decoder(name="pyav", probe=_pyav_probe, iter_frames=_pyav_iter))
DECODERS.register("decord")(Decoder(name="decord", probe=_decord_probe, iter_frames=_decord_iter))
DECODERS.register("auto")(Decoder(name="auto", probe=_auto_probe, iter_frames=_auto_iter))
