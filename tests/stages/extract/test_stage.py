"""extract end to end on a tiny synthetic corpus: failures recorded, resume, workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.store import open_store
from aamflow.stages.extract.config import ExtractConfig
from aamflow.stages.extract.stage import run_extract
from tests.corpus import store_content_digest
from tests.stages.extract.conftest import extract


def test_store_has_every_video_and_failures_are_recorded(
    reference_store: Path, small_manifest: Path
) -> None:
    s = open_store(reference_store)
    v = s.videos
    assert len(v) == 11
    failed = v[v["status"] == "failed"]
    assert set(failed["id"]) == {"missing", "corrupt"}
    assert "file not found" in failed.loc[failed["id"] == "missing", "error"].item()
    ok = v[v["status"] == "ok"]
    assert (ok["clip_count"] > 0).all() and (ok["static_count"] == 10).all()
    # dense windows for untrimmed videos, non-overlapping clips for trimmed ones
    clips = s.clips
    for row in ok.index:
        c = clips[clips["video"] == row]
        step = 16 if ok.loc[row, "task"] == "ar" else 4
        assert (np.diff(c["frame_start"]) == step).all()
        assert (c["frame_end"] <= ok.loc[row, "num_frames"]).all()
        assert (c["t_end"] > c["t_start"]).all()
    assert s.read("clip_frame_idx").shape[1] == 16
    assert np.isfinite(s.read("clip_features")).all()


def test_ad_frame_labels_and_tad_segments_are_stored(reference_store: Path) -> None:
    s = open_store(reference_store)
    ad = s.videos[(s.videos["task"] == "ad") & (s.videos["status"] == "ok")]
    for row in ad.index:
        view = s.video(int(row))
        assert len(view.frame_labels) == view.num_frames
        assert view.frame_labels.any() == bool(ad.loc[row, "label_anomaly"] == 1)
    tad = s.videos[s.videos["task"] == "tad"]
    assert set(s.segments["video"]) == set(tad.index)


def test_rerun_skips_committed_parts(small_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.zarr"
    first = extract(small_manifest, out)
    again = extract(small_manifest, out)
    assert (
        first["parts_written"] == 3 and again["parts_written"] == 0 and again["parts_skipped"] == 3
    )
    redo = extract(small_manifest, out, overwrite=True)
    assert redo["parts_written"] == 3
    assert store_content_digest(out) == store_content_digest(tmp_path / "f.zarr")


def test_strict_and_exit_codes(small_manifest: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "--quiet",
            "extract",
            "--manifest",
            str(small_manifest),
            "--out",
            str(tmp_path / "s.zarr"),
            "--strict",
            "--part-size",
            "6",
        ],
        obj={},
    )
    assert r.exit_code == 1


def test_bad_manifest_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("schema: aamflow.manifest/1\nvideos: [{id: a, path: /abs.mp4, split: train}]\n")
    r = CliRunner().invoke(
        cli, ["extract", "--manifest", str(bad), "--out", str(tmp_path / "o.zarr")], obj={}
    )
    assert r.exit_code == 2 and "is absolute" in r.output
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("point", ["staging", "1 part"])
def test_kill_and_resume_gives_the_same_store(
    small_manifest: Path, reference_store: Path, tmp_path: Path, point: str
) -> None:
    from tests.stages.test_kill_resume import kill_when, reached

    out = tmp_path / "k.zarr"
    cmd = [
        sys.executable,
        "-m",
        "aamflow.pipeline",
        "--quiet",
        "extract",
        "--manifest",
        str(small_manifest),
        "--out",
        str(out),
        "--part-size",
        "4",
    ]
    parts = out / "parts"

    assert kill_when(cmd, lambda: reached(parts, point)), (
        "the run finished before it could be killed"
    )
    assert not (parts / "part-00002").exists()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert store_content_digest(out) == store_content_digest(reference_store)
    assert open_store(out).validate(deep=True) == []
    assert not any(p.name.startswith((".tmp-", ".lock-")) for p in parts.iterdir())


@pytest.mark.slow
def test_one_and_two_workers_give_identical_stores(
    small_manifest: Path, reference_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w2.zarr"
    extract(small_manifest, out, workers=2)
    assert store_content_digest(out) == store_content_digest(reference_store)


def test_part_slices_plus_commit_only_equal_one_run(
    small_manifest: Path, reference_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sl.zarr"
    for i in range(3):
        s = extract(small_manifest, out, part_slice=f"{i}/3")
        assert s["indexed"] == (i == 2)
    run_extract(ExtractConfig(manifest=small_manifest, out=out, commit_only=True, quiet=True))
    assert store_content_digest(out) == store_content_digest(reference_store)
