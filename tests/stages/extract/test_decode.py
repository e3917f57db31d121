"""Decoding: both backends agree on the frames we sample, errors are VideoDecodeError."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from aamflow.schemas.errors import AamflowError, ConfigError
from aamflow.schemas.manifest import Sampling
from aamflow.stages.extract.decode import (
    DECODERS,
    VideoDecodeError,
    iter_frames,
    probe_video,
    read_frames,
)
from aamflow.stages.extract.sampling import plan_clips, plan_static

av = pytest.importorskip("av")

# B-frames with a fixed GOP, so decoding order != presentation order and seeks hit keyframes
X264_BFRAMES = {"x264-params": "bframes=3:b-adapt=0:keyint=12:min-keyint=12:scenecut=0"}


def pattern(i: int, w: int = 64, h: int = 64) -> np.ndarray:
    """Frame i of the test clip: colour ramps shifted by i plus a moving white square."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [(xx * 4 + i * 7) % 256, (yy * 4 + i * 3) % 256, ((xx + yy) * 2 + i * 11) % 256], -1
    ).astype(np.uint8)
    y0, x0 = (i * 2) % (h - 10), (i * 3) % (w - 10)
    img[y0 : y0 + 10, x0 : x0 + 10] = 255
    return img


def write_video(
    path: Path,
    n: int = 40,
    *,
    w: int = 64,
    h: int = 64,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``pattern(0..n-1)`` with PyAV (H.264 with B-frames by default)."""
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = X264_BFRAMES if options is None else options
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def nearest_pattern(img: np.ndarray, n: int) -> int:
    """Which pattern frame a decoded image is (frames differ by far more than codec noise)."""
    h, w = img.shape[:2]
    diffs = [np.abs(img.astype(int) - pattern(i, w, h)).mean() for i in range(n)]
    return int(np.argmin(diffs))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_video(d / "b.mp4"),
        "long": write_video(d / "long.mp4", 120),
        "ts": write_video(d / "b.ts"),
        "gray": write_video(d / "gray.mkv", 20, w=63, h=47, codec="ffv1", pix_fmt="gray"),
    }


def test_registry_lists_the_backends() -> None:
    assert DECODERS.names() == ["auto", "decord", "pyav"]
    with pytest.raises(ConfigError, match="valid: auto, decord, pyav"):
        probe_video(__file__, "opencv")


@pytest.mark.parametrize("decoder", ["decord", "pyav", "auto"])
def test_probe(videos: dict[str, Path], decoder: str) -> None:
    info = probe_video(videos["mp4"], decoder)
    assert (info.num_frames, info.width, info.height) == (40, 64, 64)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(1.6, abs=0.05)


def test_backends_agree_on_sampled_clips_with_bframes(videos: dict[str, Path]) -> None:
    """decord is the default but has known wrong-frame bugs: it must match PyAV here."""
    s = Sampling(clip_len=8, frame_stride=2, clip_stride=8, dense_stride=3, static_per_video=4)
    for task in ("ar", "tad"):
        idx = plan_clips(40, s, task).frame_idx.ravel()
        idx = np.concatenate([idx, plan_static(40, s.static_per_video, s.clip_len)])
        a, ta = read_frames(videos["mp4"], idx, "decord")
        b, tb = read_frames(videos["mp4"], idx, "pyav")
        assert a.shape == b.shape == (len(idx), 64, 64, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2
        np.testing.assert_allclose(ta, idx / 25.0, atol=1e-6)
        np.testing.assert_allclose(tb, idx / 25.0, atol=1e-6)
        # and they are the frames asked for, not neighbours
        assert [nearest_pattern(img, 40) for img in b[:12]] == idx[:12].tolist()


def test_read_frames_keeps_request_order_and_repeats(videos: dict[str, Path]) -> None:
    frames, times = read_frames(videos["mp4"], np.array([5, 0, 5, 39]), "pyav")
    assert [nearest_pattern(f, 40) for f in frames] == [5, 0, 5, 39]
    np.testing.assert_allclose(times, [0.2, 0.0, 0.2, 1.56])


def test_pyav_seeks_for_sparse_indices(videos: dict[str, Path]) -> None:
    """Far-apart frames (static clips of a long video) are reached by keyframe seeks."""
    idx = np.array([3, 70, 71, 119])
    sparse, ts = read_frames(videos["long"], idx, "pyav")
    every, _ = read_frames(videos["long"], np.arange(120), "pyav")
    np.testing.assert_array_equal(sparse, every[idx])
    assert [nearest_pattern(f, 120) for f in sparse] == idx.tolist()
    np.testing.assert_allclose(ts, idx / 25.0)


def test_iter_frames_streams_in_order(videos: dict[str, Path]) -> None:
    got = list(iter_frames(videos["mp4"], np.array([1, 2, 30]), "pyav"))
    assert [f.index for f in got] == [1, 2, 30]
    assert {f.decoder for f in got} == {"pyav"}
    with pytest.raises(ValueError, match="strictly increasing"):
        list(iter_frames(videos["mp4"], np.array([2, 1]), "pyav"))


def test_auto_catches_decord_wrong_frames_on_mpegts(
    videos: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """decord mis-orders B-frames in this MPEG-TS file; ``auto`` notices and uses PyAV."""
    idx = np.arange(0, 40, 3)
    with caplog.at_level(logging.WARNING):
        frames, times = read_frames(videos["ts"], idx, "auto")
    assert [nearest_pattern(f, 40) for f in frames] == idx.tolist()
    np.testing.assert_allclose(times, idx / 25.0, atol=1e-6)  # relative to the stream start
    assert {f.decoder for f in iter_frames(videos["ts"], idx, "auto")} == {"pyav"}
    assert "using PyAV" in caplog.text
    # the same file without B-frame trouble stays on decord
    assert {f.decoder for f in iter_frames(videos["mp4"], idx, "auto")} == {"decord"}


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_grayscale_odd_size_is_rgb(videos: dict[str, Path], decoder: str) -> None:
    info = probe_video(videos["gray"], decoder)
    assert (info.width, info.height, info.num_frames) == (63, 47, 20)
    frames, _ = read_frames(videos["gray"], np.arange(0, 20, 4), decoder)
    assert frames.shape == (5, 47, 63, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[..., 0], frames[..., 2])  # gray: equal channels


def _bad_files(d: Path) -> dict[str, Path]:
    (d / "empty.mp4").write_bytes(b"")
    (d / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "text.mp4").write_text("not a video\n")
    return {
        "missing": d / "missing.mp4",
        "empty": d / "empty.mp4",
        "junk": d / "junk.mp4",
        "text": d / "text.mp4",
        "folder": d,
    }


@pytest.mark.parametrize("decoder", ["decord", "pyav", "auto"])
def test_bad_files_raise_video_decode_error(tmp_path: Path, decoder: str) -> None:
    for why, path in _bad_files(tmp_path).items():
        with pytest.raises(VideoDecodeError) as err:
            probe_video(path, decoder)
        assert isinstance(err.value, AamflowError)
        assert err.value.path == str(path), why
        with pytest.raises(VideoDecodeError):
            read_frames(path, np.array([0]), decoder)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_index_past_the_end_reports_decodable_frames(videos: dict[str, Path], decoder) -> None:
    with pytest.raises(VideoDecodeError, match="frame 45") as err:
        read_frames(videos["mp4"], np.array([10, 45]), decoder)
    assert err.value.decodable == 40


def test_truncated_stream_decodes_fewer_frames_than_its_header(tmp_path: Path) -> None:
    """moov first (faststart), mdat cut: the header promises 40 frames, fewer decode."""
    path = write_video(tmp_path / "cut.mp4", container_options={"movflags": "faststart"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    assert probe_video(path, "pyav").num_frames == 40
    with pytest.raises(VideoDecodeError) as err:
        read_frames(path, np.arange(40), "pyav")
    assert err.value.decodable is not None and 0 < err.value.decodable < 40


def test_variable_frame_rate_timestamps_follow_the_stream(tmp_path: Path) -> None:
    """Every third frame lasts 100 ms instead of 40: times come from pts, not index / fps."""
    from fractions import Fraction

    path = tmp_path / "vfr.mp4"
    times, t = [], 0
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 64, 64, "yuv420p", X264_BFRAMES
        s.codec_context.time_base = Fraction(1, 1000)
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            times.append(t / 1000)
            t += 100 if i % 3 == 0 else 40
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    idx = np.arange(0, 40, 3)
    for decoder in ("decord", "pyav"):
        frames, ts = read_frames(path, idx, decoder)
        assert [nearest_pattern(f, 40) for f in frames] == idx.tolist()
        np.testing.assert_allclose(ts, np.array(times)[idx], atol=1e-6)
