"""extract over a folder of awkward and broken videos: every video gets a row, broken ones
are recorded with their error, the run never crashes and no part is half-written."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from aamflow.schemas.store import open_store
from aamflow.stages.extract.config import ExtractConfig
from aamflow.stages.extract.stage import run_extract
from tests.stages.extract.test_decode import pattern, write_video


def _vfr(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += 100 if i % 3 == 0 else 40
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10)[None, :] * 0.1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _rotated(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.metadata["rotate"] = "90"
        for i in range(40):
            for pkt in s.encode(av.VideoFrame.from_ndarray(pattern(i, 64, 48), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.fixture(scope="module")
def bad_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("bad")
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    full = write_video(d / "full.mp4", 60)
    data = full.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: int(len(data) * 0.6)])
    write_video(d / "short.mp4", 8)
    write_video(d / "odd.mkv", 40, w=63, h=47, pix_fmt="yuv444p", options={})
    write_video(d / "gray.mkv", 40, codec="ffv1", pix_fmt="gray")
    _vfr(d / "vfr.mp4")
    _rotated(d / "rotated.mp4")
    _audio_only(d / "audio.m4a")
    names = [
        "zero.mp4",
        "text.mp4",
        "truncated.mp4",
        "missing.mp4",
        "short.mp4",
        "odd.mkv",
        "gray.mkv",
        "vfr.mp4",
        "rotated.mp4",
        "audio.m4a",
        "full.mp4",
    ]
    videos = [{"id": Path(n).stem, "path": n, "split": "train", "task": "ar"} for n in names]
    (d / "m.yaml").write_text(yaml.safe_dump({"schema": "aamflow.manifest/1", "videos": videos}))
    out = d / "f.zarr"
    summary = run_extract(
        ExtractConfig(manifest=d / "m.yaml", out=out, part_size=4, quiet=True, loader_workers=0)
    )
    status = dict(zip(open_store(out).videos["id"], open_store(out).videos["status"], strict=True))
    return out, {"summary": summary, **status}


@pytest.mark.parametrize("name", ["zero", "text", "missing", "audio"])
def test_broken_files_are_recorded_with_an_error(bad_store, name: str) -> None:
    out, status = bad_store
    assert status[name] == "failed"
    v = open_store(out).videos.set_index("id").loc[name]
    assert v["error"] and v["clip_count"] == 0


@pytest.mark.parametrize("name", ["short", "odd", "gray", "vfr", "rotated", "full"])
def test_awkward_but_valid_videos_are_extracted(bad_store, name: str) -> None:
    out, status = bad_store
    assert status[name] == "ok", open_store(out).videos.set_index("id").loc[name, "error"]
    s = open_store(out)
    row = int(s.videos.set_index("id").loc[name, "row"])
    view = s.video(row)
    assert len(view.clip_features) >= 1 and np.isfinite(view.clip_features).all()
    assert len(view.static_features) == 10


def test_a_short_video_gives_one_padded_clip(bad_store) -> None:
    out, _ = bad_store
    s = open_store(out)
    row = int(s.videos.set_index("id").loc["short", "row"])
    assert s.clips[s.clips["video"] == row]["padded"].tolist() == [True]


def test_a_truncated_video_is_recorded_or_keeps_only_what_decodes(bad_store) -> None:
    out, status = bad_store
    v = open_store(out).videos.set_index("id").loc["truncated"]
    if status["truncated"] == "ok":
        assert 0 < v["num_frames"] < 60
    else:
        assert v["error"]


def test_the_run_completes_and_validates(bad_store) -> None:
    out, status = bad_store
    assert status["summary"]["indexed"] and status["summary"]["exit_code"] == 0
    assert open_store(out).validate(deep=True) == []
