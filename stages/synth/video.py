"""Write frames as H.264 mp4 with PyAV, atomically and deterministically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from aamflow.schemas.errors import ConfigError

# ultrafast: x264's lookahead (every slower preset) let bytes past the 56-pixel chroma rows,
# which FFmpeg leaves uninitialised, change the bitstream from run to run; without it the
# same pixels always give the same file (checked over hundreds of encodes)
_X264_OPTIONS = {"preset": "ultrafast", "crf": "18", "threads": "1"}
_H264_ENCODERS = ("libx264", "libopenh264")


def h264_encoder() -> str:
    """The first H.264 encoder this PyAV build offers."""
    import av

    for name in _H264_ENCODERS:
        if name in av.codecs_available:
            return name
    raise ConfigError(
        "synth: this PyAV build has no H.264 encoder (libx264/libopenh264); "
        "install the PyPI 'av' wheel, which bundles libx264"
    )


def write_mp4(path: Path, chunks: Iterable[np.ndarray], fps: int) -> int:
    """Encode uint8 RGB chunks ``[T, H, W, 3]`` to ``path``; returns the frame count.

    The file appears under its final name only once complete.
    """
    import av

    codec = h264_encoder()
    tmp = path.with_name(f".{path.name}.part")
    count = 0
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = None
            for chunk in chunks:
                if stream is None:
                    stream = container.add_stream(codec, rate=fps)
                    stream.height, stream.width = chunk.shape[1:3]
                    stream.pix_fmt = "yuv420p"
                    stream.codec_context.thread_count = 1
                    if codec == "libx264":
                        stream.options = {**_X264_OPTIONS, "g": str(2 * fps)}
                for frame in chunk:
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                    container.mux(stream.encode(vf))
                    count += 1
            if stream is not None:
                container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
