"""Feature store contract: written once, run against every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aamflow.schemas.errors import StoreError
from aamflow.schemas.fake import FAKE_SPACES, fake_store
from aamflow.schemas.store import (
    PartPlan,
    committed_parts,
    create_store,
    index_store,
    new_store_attrs,
    open_part_writer,
    open_store,
    plan_parts,
)
from tests.conftest import store_path


@pytest.fixture
def store(tmp_path: Path, backend_name: str) -> Path:
    return fake_store(
        store_path(tmp_path, backend_name), n_videos=20, part_size=6, fmt=backend_name, seed=3
    )


def test_round_trip_reads_back_exactly(tmp_path: Path, backend_name: str) -> None:
    # two stores from the same seed: one read back, one regenerated in memory by the same rng
    p = fake_store(
        store_path(tmp_path, backend_name), n_videos=20, part_size=6, fmt=backend_name, seed=3
    )
    s = open_store(p)
    assert s.format == backend_name
    assert len(s) == 20 and len(s.part_names) == 4
    assert list(s.videos["id"]) == [f"v{i:05d}" for i in range(20)]
    from aamflow.schemas import fake

    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(16, 32)).astype(np.float32)
    for row in range(20):
        rec = fake._fake_video(rng, row, 20, 32, 6, 4, ("ar", "tad", "ad"), dirs, 2.0)
        v = s.video(row)
        np.testing.assert_array_equal(v.clip_features, rec.clip_features)
        np.testing.assert_array_equal(v.static_features, rec.static_features)
        np.testing.assert_array_equal(v.clip_frames, rec.clip_frames)
        assert v.labels["label_attr_skin_tone"] == rec.labels["label_attr_skin_tone"]
        assert len(v.segments) == len(rec.segments)
        if rec.frame_labels is not None:
            np.testing.assert_array_equal(v.frame_labels, rec.frame_labels)


def test_dask_and_per_video_views_agree(store: Path) -> None:
    s = open_store(store)
    x = s.clip_features()
    assert x.shape == (20 * 6, 32) and x.dtype == np.float32
    dense = x.compute()
    clip_video = s.clips["video"].to_numpy()
    for row in (0, 5, 6, 19):
        np.testing.assert_array_equal(dense[clip_video == row], s.video(row).clip_features)
    st = s.static_features().compute()
    np.testing.assert_array_equal(st[s.static["video"].to_numpy() == 7], s.video(7).static_features)


def test_label_tables(store: Path) -> None:
    s = open_store(store)
    v = s.videos
    assert set(v["split"]) == {"train", "val", "test"}
    assert set(v["task"]) == {"ar", "tad", "ad"}
    assert (v.loc[v["task"] != "ar", "label_action"] == -1).all()
    assert set(s.segments["video"]) == set(v.index[v["task"] == "tad"])
    assert s.label_spaces == FAKE_SPACES


def test_attributes_survive(store: Path) -> None:
    s = open_store(store)
    assert s.encoder["name"] == "fake" and s.feature_dim == 32
    assert s.sampling["static_per_video"] == 4
    prov = s.provenance
    assert len(prov["store_uuid"]) == 36 and prov["anonymized"] is False
    assert s.meta["index"]["totals"]["clips"] == 120


def test_uncommitted_part_is_invisible_and_rewritable(tmp_path: Path, backend_name: str) -> None:
    p = store_path(tmp_path, backend_name)
    plan = plan_parts(4, 2)
    enc = {"name": "fake", "dim": 8, "weights_digest": "x", "clip_len": 16}
    create_store(
        p,
        new_store_attrs(
            encoder=enc, sampling={"clip_len": 16}, label_spaces=FAKE_SPACES, plan=plan
        ),
    )
    from aamflow.schemas.fake import _fake_video

    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(16, 8)).astype(np.float32)
    recs = [_fake_video(rng, r, 4, 8, 3, 2, ("ar",), dirs, 1.0) for r in range(4)]
    w = open_part_writer(p, plan[0])
    w.add(recs[0])  # crash here: never committed
    w.lock.release()  # the crashed process is gone, so its lock is stale
    assert committed_parts(p) == set()
    with pytest.raises(StoreError, match="not indexed"):
        open_store(p)
    with pytest.raises(StoreError, match="not committed yet: part-00000, part-00001"):
        index_store(p)
    for part in plan:
        with open_part_writer(p, part) as w2:
            for r in range(part.start, part.stop):
                w2.add(recs[r])
            w2.commit()
    index_store(p)
    s = open_store(p)
    assert len(s) == 4 and s.clip_features().shape[0] == 12  # no duplicates from the crash


def test_rows_must_arrive_in_order(tmp_path: Path, backend_name: str) -> None:
    p = store_path(tmp_path, backend_name)
    plan = [PartPlan(index=0, start=0, stop=2)]
    enc = {"name": "fake", "dim": 8, "weights_digest": "x", "clip_len": 16}
    create_store(p, new_store_attrs(encoder=enc, sampling={}, label_spaces=FAKE_SPACES, plan=plan))
    from aamflow.schemas.fake import _fake_video

    rng = np.random.default_rng(0)
    rec = _fake_video(rng, 1, 2, 8, 3, 2, ("ar",), rng.normal(size=(16, 8)), 1.0)
    with open_part_writer(p, plan[0]) as w:
        with pytest.raises(StoreError, match="expected video row 0, got 1"):
            w.add(rec)
        with pytest.raises(StoreError, match="only rows"):
            w.commit()


def test_resume_refuses_a_different_store(store: Path) -> None:
    meta = open_store(store).meta
    attrs = {"aamflow": dict(meta, encoder={**meta["encoder"], "name": "other"})}
    with pytest.raises(StoreError, match="different encoder"):
        create_store(store, attrs, exist_ok=True)
    with pytest.raises(StoreError, match="already exists"):
        create_store(store, attrs)


def test_validation_finds_a_deleted_chunk(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    assert open_store(p).validate(deep=True) == []
    chunk = next((p / "parts" / "part-00001" / "clip_features" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.unlink()
    problems = open_store(p).validate()
    assert any("part-00001" in x and "clip_features" in x and "missing" in x for x in problems)


def test_a_corrupted_chunk_fails_loudly(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    chunk = next(
        f
        for f in (p / "parts" / "part-00000" / "clip_features").rglob("*")
        if f.is_file() and f.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="part-00000, array clip_features"):
        open_store(p).read("clip_features")


def test_a_zarr_part_opens_in_plain_zarr_and_xarray(tmp_path: Path) -> None:
    import xarray as xr
    import zarr

    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    root = zarr.open_group(str(p), mode="r")
    assert "aamflow" in root.attrs
    part = root["parts/part-00000"]
    assert part["clip_features"].shape == (18, 32)
    ds = xr.open_zarr(p / "parts" / "part-00000", consolidated=False)
    assert ds["clip_features"].dims == ("clip", "feature")
    assert ds["video_id"].dims == ("video",)
    assert ds.sizes["video"] == 3


def test_an_hdf5_store_opens_in_plain_h5py(tmp_path: Path) -> None:
    import h5py

    p = fake_store(tmp_path / "f.h5", n_videos=6, part_size=3, fmt="hdf5")
    with h5py.File(p, "r") as f:
        assert sorted(f["parts"]) == ["part-00000", "part-00001"]
        ds = f["parts/part-00001/clip_features"]
        assert ds.shape == (18, 32)
        assert [d.label for d in ds.dims] == ["clip", "feature"]


def test_a_part_has_one_writer_and_stale_locks_are_taken_over(
    tmp_path: Path, backend_name: str
) -> None:
    import json
    import subprocess
    import sys

    p = store_path(tmp_path, backend_name)
    plan = plan_parts(2, 1)
    enc = {"name": "fake", "dim": 8, "weights_digest": "x", "clip_len": 16}
    create_store(p, new_store_attrs(encoder=enc, sampling={}, label_spaces=FAKE_SPACES, plan=plan))
    first = open_part_writer(p, plan[0])
    with pytest.raises(StoreError, match="part part-00000 is being written by pid"):
        open_part_writer(p, plan[0])
    open_part_writer(p, plan[1]).abort()  # other parts are free
    # the first writer dies without cleaning up: a dead pid on this host is a stale lock
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    first.lock.file.write_text(
        json.dumps({**json.loads(first.lock.file.read_text()), "pid": int(dead)})
    )
    open_part_writer(p, plan[0]).abort()


def test_the_reader_refuses_a_part_with_a_deleted_chunk(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    chunk = next(
        f
        for f in (p / "parts" / "part-00001" / "static_features").rglob("*")
        if f.is_file() and f.name != "zarr.json"
    )
    chunk.unlink()
    with pytest.raises(StoreError, match="part part-00001: array static_features: 1 chunk"):
        open_store(p).video(4)
    problems = open_store(p).validate()  # validation lists it instead of raising
    assert any("part-00001" in x and "static_features" in x for x in problems)
