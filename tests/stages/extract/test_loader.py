"""The loader: one read per video, frame-wise preprocessing, chunks, order, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aamflow.schemas.manifest import Sampling
from aamflow.stages.extract.decode import VideoDecodeError, read_frames
from aamflow.stages.extract.encoders import EncoderIdentity
from aamflow.stages.extract.loader import (
    VideoJob,
    chunk_ranges,
    encode_in_batches,
    encode_videos,
    iter_video_chunks,
)
from aamflow.stages.extract.preprocess import ClipTransform, PooledEncoder
from aamflow.stages.extract.sampling import plan_clips, plan_static

from .test_decode import write_video

SAMPLING = Sampling(
    clip_len=4, frame_stride=1, clip_stride=4, dense_stride=2, static_per_video=3, input_size=16
)
TRANSFORM = ClipTransform(resize=16, crop=16)


class TinyNet(torch.nn.Module):
    """A per-clip 3-D conv + mean: enough to tell clips apart, fast on CPU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(1, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


def tiny_encoder() -> PooledEncoder:
    ident = EncoderIdentity(name="tiny", dim=8, weights_digest="sha256:0", clip_len=4)
    return PooledEncoder(identity=ident, module=TinyNet().eval(), transform=TRANSFORM)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[VideoJob]:
    d = tmp_path_factory.mktemp("corpus")
    write_video(d / "ar.mp4", 40)
    write_video(d / "tad.mp4", 30)
    write_video(d / "short.mp4", 3)
    write_video(d / "gray.mkv", 20, w=63, h=47, codec="ffv1", pix_fmt="gray")
    (d / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(2048))
    names = [
        ("ar.mp4", "ar"),
        ("junk.mp4", "ar"),
        ("tad.mp4", "tad"),
        ("short.mp4", "ar"),
        ("missing.mp4", "tad"),
        ("gray.mkv", "ad"),
    ]
    # rows are manifest rows: not the list position, to catch mix-ups
    return [VideoJob(row=100 + i, path=str(d / n), task=t) for i, (n, t) in enumerate(names)]


NUM_FRAMES = {"ar.mp4": 40, "tad.mp4": 30, "short.mp4": 3, "gray.mkv": 20}


def by_video(chunks) -> dict[int, list]:
    out: dict[int, list] = {}
    for c in chunks:
        out.setdefault(c.index, []).append(c)
    return out


def test_one_chunk_per_short_video_with_exact_clips(corpus: list[VideoJob]) -> None:
    chunks = list(iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="pyav"))
    assert [c.index for c in chunks] == list(range(len(corpus)))  # input order
    assert all(c.last for c in chunks)
    for c, job in zip(chunks, corpus, strict=True):
        assert c.job == job
        name = Path(job.path).name
        if name not in NUM_FRAMES:  # junk and missing: recorded, not raised
            assert isinstance(c.error, VideoDecodeError) and c.num_clips == 0
            continue
        n = NUM_FRAMES[name]
        assert c.error is None and c.info.num_frames == n and c.decoder == "pyav"
        plan = plan_clips(n, SAMPLING, job.task)
        np.testing.assert_array_equal(c.plan.frame_idx, plan.frame_idx)
        np.testing.assert_array_equal(c.plan.padded, plan.padded)
        assert c.clips.shape == (plan.num_clips, 3, 4, 16, 16)
        np.testing.assert_allclose(c.frame_times, plan.frame_idx / 25.0, atol=1e-6)
        np.testing.assert_allclose(c.clip_times()[:, 1], (plan.frame_idx[:, -1] + 1) / 25.0)
        # each clip is exactly the encoder's preprocess of its decoded frames
        last = plan.num_clips - 1
        rgb, _ = read_frames(job.path, plan.frame_idx[last], "pyav")
        torch.testing.assert_close(c.clips[last], TRANSFORM(rgb))
        static = plan_static(n, 3, 4)
        np.testing.assert_array_equal(c.static_idx, static)
        assert c.static.shape == (3, 3, 4, 16, 16)
        rgb, _ = read_frames(job.path, static[1:2], "pyav")
        torch.testing.assert_close(c.static[1], TRANSFORM(np.repeat(rgb, 4, axis=0)))
    assert chunks[2].num_clips == 14  # tad: starts 0, 2, ..., 26
    assert chunks[3].plan.padded.tolist() == [True]  # 3 frames < one 4-frame clip


def test_long_videos_stream_in_chunks(corpus: list[VideoJob]) -> None:
    whole = by_video(iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="pyav"))
    parts = by_video(
        iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="pyav", max_chunk_frames=8)
    )
    assert len(parts[0]) == 5 and len(parts[2]) == 5  # 40 frames / 8; 30 frames dense
    for i, chunks in parts.items():
        assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert [c.chunk for c in chunks] == list(range(len(chunks))) or chunks[0].error
        if chunks[-1].error is not None:
            continue
        assert all(c.frames.shape[1] <= 8 for c in chunks)
        assert [c.first_clip for c in chunks] == list(
            np.cumsum([0] + [c.num_clips for c in chunks])[:-1]
        )
        torch.testing.assert_close(torch.cat([c.clips for c in chunks]), whole[i][0].clips)
        torch.testing.assert_close(chunks[-1].static, whole[i][0].static)


def test_workers_keep_the_order_and_the_data(corpus: list[VideoJob]) -> None:
    # the serial run leaves a decord reader cached in this process: forked workers must
    # neither use nor free it (decord's threads do not survive fork; the worker would abort)
    serial = list(iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="auto"))
    parallel = list(iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="auto", num_workers=2))
    assert [(c.index, c.chunk) for c in parallel] == [(c.index, c.chunk) for c in serial]
    for a, b in zip(serial, parallel, strict=True):
        assert (a.error is None) == (b.error is None)
        if a.error is None:
            torch.testing.assert_close(a.clips, b.clips)
            assert a.decoder == b.decoder


def test_a_stream_shorter_than_its_header_is_replanned(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut.mp4", 40, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    job = VideoJob(row=0, path=str(path), task="tad")
    chunks = list(iter_video_chunks([job], SAMPLING, TRANSFORM, decoder="pyav", max_chunk_frames=8))
    last = chunks[-1]
    assert last.error is None and last.probed_frames == 40
    m = last.info.num_frames
    assert 4 <= m < 40
    plan = plan_clips(m, SAMPLING, "tad")
    assert sum(c.num_clips for c in chunks) == plan.num_clips
    np.testing.assert_array_equal(np.concatenate([c.plan.start for c in chunks]), plan.start)
    np.testing.assert_array_equal(last.static_idx, plan_static(m, 3, 4))


def test_encode_videos_yields_each_video_in_order(corpus: list[VideoJob]) -> None:
    enc = tiny_encoder()
    chunks = list(iter_video_chunks(corpus, SAMPLING, TRANSFORM, decoder="pyav"))
    results = {}
    for batch_size, workers, frames in [(64, 0, 256), (3, 2, 8)]:
        results[batch_size] = out = list(
            encode_videos(
                corpus,
                SAMPLING,
                enc,
                batch_size=batch_size,
                decoder="pyav",
                num_workers=workers,
                max_chunk_frames=frames,
            )
        )
        assert [f.index for f in out] == list(range(len(corpus)))
        for f, c in zip(out, chunks, strict=True):
            assert f.job == c.job and f.ok == (c.error is None)
            if not f.ok:
                assert f.clip_features is None and str(f.error).startswith(f.job.path)
                continue
            expected = enc.encode(c.clips).numpy()
            assert f.clip_features.shape == (c.num_clips, 8) and f.clip_features.dtype == np.float32
            np.testing.assert_allclose(f.clip_features, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(f.static_features, enc.encode(c.static).numpy(), atol=1e-6)
            np.testing.assert_array_equal(f.plan.frame_idx, c.plan.frame_idx)
            assert f.clip_times().shape == (c.num_clips, 2)
    for a, b in zip(results[64], results[3], strict=True):
        if a.ok:
            np.testing.assert_allclose(a.clip_features, b.clip_features, rtol=1e-5, atol=1e-6)


def test_encode_in_batches_matches_one_call() -> None:
    enc = tiny_encoder()
    clips = torch.randn(7, 3, 4, 16, 16)
    out = encode_in_batches(enc, clips, batch_size=3)
    torch.testing.assert_close(out, enc.encode(clips))
    assert encode_in_batches(enc, clips[:0], batch_size=3).shape == (0, 8)


def test_chunk_ranges_bound_distinct_frames() -> None:
    dense = plan_clips(30, SAMPLING, "tad")  # 14 windows of 4 frames, step 2
    ranges = chunk_ranges(dense, 8)
    assert ranges[0] == (0, 3) and ranges[-1][1] == 14  # windows 0-3, 2-5, 4-7: 8 frames
    assert all(len(np.unique(dense.frame_idx[lo:hi])) <= 8 for lo, hi in ranges)
    assert chunk_ranges(dense, 2) == [(i, i + 1) for i in range(14)]  # a clip always fits
