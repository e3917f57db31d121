"""The loader ships uint8 frames once per message; clips are gathered and normalised where
the encoder runs, with the same bytes as preprocessing whole clips up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aamflow.schemas.manifest import Sampling
from aamflow.stages.extract.decode import iter_frames
from aamflow.stages.extract.encoders import create_encoder
from aamflow.stages.extract.preprocess import ClipTransform
from aamflow.stages.extract.stage import _Batcher, _encode_pixels
from aamflow.stages.extract.stream import VideoJob, video_messages
from tests.stages.extract.test_decode import write_video

SAMPLING = Sampling(clip_len=8, clip_stride=8, dense_stride=2, static_per_video=3, input_size=32)


def test_normalising_cropped_frames_later_gives_the_same_bytes() -> None:
    t = ClipTransform(resize=24, crop=20)
    clips = np.random.default_rng(0).integers(0, 256, (3, 5, 30, 40, 3), dtype=np.uint8)
    cropped = torch.stack([t.crop_frames(c) for c in clips])  # [B, T, 3, S, S]
    assert cropped.dtype == torch.uint8 and cropped.shape == (3, 5, 3, 20, 20)
    later = t.normalize(cropped.permute(0, 2, 1, 3, 4))
    assert torch.equal(later, torch.stack([t(c) for c in clips]))


@pytest.fixture(scope="module")
def dense_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("stream") / "v.mp4", n=30)


def test_messages_ship_each_frame_once_and_gather_into_clips(dense_video: Path) -> None:
    t = ClipTransform(resize=32, crop=32)
    job = VideoJob(index=0, path=str(dense_video), task="tad")
    msgs = list(video_messages(job, SAMPLING, t.crop_frames, "pyav", chunk=4))
    assert [m["kind"] for m in msgs][0] == "info" and msgs[-1]["kind"] == "done"
    decoded = torch.stack(
        [t.crop_frames(f.rgb[None])[0] for f in iter_frames(dense_video, np.arange(30), "pyav")]
    )
    clips = [m for m in msgs if m["kind"] == "clips"]
    for m in clips:
        px, g = m["pixels"], m["gather"]
        assert px.dtype == torch.uint8 and len(px) == len(np.unique(m["frame_idx"]))
        assert torch.equal(px[torch.from_numpy(g)], decoded[torch.from_numpy(m["frame_idx"])])
    # stride-2 windows of 8 frames: a chunk of 4 clips needs 14 frames, not 32
    assert len(clips[0]["pixels"]) == 14 and clips[0]["gather"].shape == (4, 8)
    (static,) = [m for m in msgs if m["kind"] == "static"]
    assert len(static["pixels"]) == 3 and static["gather"].shape == (3, 8)
    assert (static["gather"] == static["gather"][:, :1]).all()  # one frame tiled
    assert torch.equal(static["pixels"][static["gather"][:, 0]], decoded[static["frame"]])


def _encode_preprocessed(enc, clips: torch.Tensor) -> np.ndarray:
    """The reference: encode fully preprocessed float clips, as extract did before."""
    with torch.inference_mode():
        return enc.encode(clips).float().numpy()


def test_batcher_gives_the_features_of_preprocessed_clips_in_the_same_batches() -> None:
    enc = create_encoder("builtin")
    frames = np.random.default_rng(1).integers(0, 256, (2, 12, 40, 56, 3), dtype=np.uint8)
    pixels = [enc.transform.crop_frames(f) for f in frames]
    gathers = [np.array([[0, 1, 2, 3], [2, 3, 4, 5]]), np.array([[0] * 4, [5] * 4, [9] * 4])]
    batcher = _Batcher(3, lambda px, g: _encode_pixels(enc, px, g, "cpu", "fp32"))
    assert batcher.add("a", pixels[0], gathers[0]) == []
    # the second item fills a batch: it is launched, and handed out by the next flush
    assert batcher.add("b", pixels[1], gathers[1]) == []
    out = batcher.flush(wait=True)
    assert [k for k, _ in out] == ["a", "b"] and [len(f) for _, f in out] == [2, 3]
    clips = torch.stack(
        [enc.preprocess(f[r]) for f, g in zip(frames, gathers, strict=True) for r in g]
    )
    want = np.concatenate(
        [_encode_preprocessed(enc, clips[:3]), _encode_preprocessed(enc, clips[3:])]
    )
    assert np.array_equal(np.concatenate([f for _, f in out]), want)
    assert batcher.flush(wait=True) == []
