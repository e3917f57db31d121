"""Damaged, edited, unfinished and contested stores: every reader refuses by name, and
ownership keeps raw and anonymized features apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aamflow.schemas.errors import StoreError
from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import (
    check_writer,
    create_store,
    index_store,
    open_part_writer,
    open_store,
    store_plan,
)
from tests.conftest import store_path


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def first_chunk(array_dir: Path) -> Path:
    return next(f for f in array_dir.rglob("*") if f.is_file() and f.name != "zarr.json")


@pytest.mark.parametrize(
    "array", ["label_attr_gender", "label_action", "video_split", "frame_labels", "clip_time"]
)
def test_a_missing_chunk_in_any_array_is_refused_by_every_reader(
    tmp_path: Path, array: str
) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    first_chunk(p / "parts" / "part-00000" / array).unlink()
    with pytest.raises(StoreError, match=f"part part-00000: array {array}: 1 chunk"):
        open_store(p).videos  # noqa: B018  (labels would read back as -1)
    with pytest.raises(StoreError, match=array):
        index_store(p)
    assert any(array in x for x in open_store(p).validate())


def test_a_deleted_array_is_refused(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    shutil.rmtree(p / "parts" / "part-00001" / "label_attr_gender")
    with pytest.raises(StoreError, match="array label_attr_gender is missing"):
        open_store(p).video(4)


def test_edited_shapes_and_counts_are_caught_when_a_verb_opens_the_store(
    tmp_path: Path,
) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    # an array's declared shape edited: its rows no longer match the part's counts
    meta = p / "parts" / "part-00000" / "clip_features" / "zarr.json"
    edit_json(meta, lambda d: d.update(shape=[d["shape"][0] - 2, d["shape"][1]]))
    with pytest.raises(StoreError, match="clip_features: 16 rows"):
        open_store(p).read("clip_features")

    q = fake_store(tmp_path / "g.zarr", n_videos=6, part_size=3)
    edit_json(
        q / "zarr.json",
        lambda d: d["attributes"]["aamflow"]["index"]["parts"][1]["counts"].update(clips=99),
    )
    with pytest.raises(StoreError, match="root attributes are malformed"):
        open_store(q)

    r = fake_store(tmp_path / "h.zarr", n_videos=6, part_size=3)
    edit_json(
        r / "parts" / "part-00001" / "zarr.json",
        lambda d: d["attributes"]["aamflow_part"]["counts"].update(clips=5),
    )
    with pytest.raises(StoreError, match="part-00001"):
        open_store(r).read("clip_video")


def test_a_corrupted_chunk_read_through_dask_is_a_store_error(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    chunk = first_chunk(p / "parts" / "part-00001" / "static_features")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    s = open_store(p)
    with pytest.raises(StoreError, match="part part-00001, array static_features: unreadable"):
        np.asarray(s.static_features()[np.arange(10, 15)])  # eval's path: dask
    assert any("static_features" in x for x in s.validate(deep=True))


def test_a_truncated_zarr_json_is_one_error(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    part_meta = p / "parts" / "part-00000" / "zarr.json"
    part_meta.write_text(part_meta.read_text()[:40])
    with pytest.raises(StoreError, match="part part-00000 cannot be opened"):
        open_store(p).videos  # noqa: B018
    assert any("part-00000" in x for x in open_store(p).validate())
    root = p / "zarr.json"
    root.write_text(root.read_text()[:100])
    with pytest.raises(StoreError, match="zarr.json: damaged"):
        open_store(p)


def test_an_unindexed_store_opens_for_inspection(tmp_path: Path, backend_name: str) -> None:
    p = fake_store(store_path(tmp_path, backend_name), n_videos=9, part_size=3, fmt=backend_name)
    attrs = open_store(p).attrs
    attrs["aamflow"]["index"] = None
    open_store(p).backend.write_attrs(p, attrs)
    s = open_store(p, allow_incomplete=True)
    assert not s.complete and len(s.part_names) == 3 and len(s.videos) == 9
    assert s.validate(deep=True) == []


def test_inspect_reports_non_finite_features(tmp_path: Path) -> None:
    from aamflow.schemas.fake import _fake_video

    p = fake_store(tmp_path / "f.zarr", n_videos=4, part_size=4, tasks=("ar",))
    plan = store_plan(p)[0]
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(16, 32)).astype(np.float32)
    with open_part_writer(p, plan) as w:
        for row in range(4):
            rec = _fake_video(rng, row, 4, 32, 6, 4, ("ar",), dirs, 1.0)
            if row == 2:
                rec.clip_features[1, 3] = np.nan
            w.add(rec)
        w.commit()
    assert open_store(p).validate(deep=False) == []  # structure is sound: only --deep sees it
    problems = open_store(p).validate(deep=True)
    assert any("clip_features: 1 non-finite value" in x for x in problems)


def test_only_the_owning_verb_writes_into_a_store(tmp_path: Path, backend_name: str) -> None:
    p = fake_store(store_path(tmp_path, backend_name), n_videos=6, part_size=3, fmt=backend_name)
    meta = open_store(p).meta
    check_writer(p, meta, "extract")
    with pytest.raises(StoreError, match="raw feature store written by extract; anonymize never"):
        check_writer(p, meta, "anonymize")
    anon = json.loads(json.dumps(meta))
    anon["provenance"].update(anonymized=True, writer="anonymize")
    attrs = {"aamflow": anon}
    with pytest.raises(StoreError, match="anonymize never writes"):
        create_store(p, attrs, exist_ok=True)  # anonymize resuming into a raw store
    # an anonymized store: extract may neither resume nor index it
    open_store(p).backend.write_attrs(p, attrs)
    raw_attrs = {"aamflow": meta}
    with pytest.raises(StoreError, match="anonymized store written by anonymize; extract never"):
        create_store(p, raw_attrs, exist_ok=True)
    with pytest.raises(StoreError, match="extract never"):
        index_store(p, writer="extract")
    with pytest.raises(StoreError, match="extract never"):
        open_part_writer(p, store_plan(p)[0], writer="extract")
    # a store that says anonymized but names extract as its writer is refused to both
    anon["provenance"]["writer"] = "extract"
    with pytest.raises(StoreError):
        check_writer(p, anon, "extract")


def test_two_runs_creating_one_store_at_once_share_it(
    tmp_path: Path, backend_name: str, monkeypatch
) -> None:
    from aamflow.schemas import store as store_mod

    p = store_path(tmp_path, backend_name)
    template = fake_store(
        store_path(tmp_path, backend_name, "t"), n_videos=4, part_size=2, fmt=backend_name
    )
    attrs = open_store(template).attrs
    attrs["aamflow"]["index"] = None
    backend = store_mod.backend_for(p, backend_name)
    real = type(backend).create

    def racing(self, path, a):
        real(self, path, a)  # the other run wins the race...
        real(self, path, a)  # ...so this one finds the store there

    monkeypatch.setattr(type(backend), "create", racing)
    got = create_store(p, attrs, fmt=backend_name, exist_ok=True)
    assert got.name == backend_name and open_store(p, allow_incomplete=True).meta["plan"]
