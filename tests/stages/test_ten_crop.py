"""Ten-crop stores on the tiny corpus: extraction, the crop axis, anonymize, export, xarray.

One small ten-crop store (one video of each task) is extracted once for the module; a
one-crop store of the same videos checks that crops leave the one-crop layout alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.layout import CENTRE_CROP, CROP_NAMES
from aamflow.schemas.store import open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import _load_adapter, run_anonymize
from aamflow.stages.export import ExportConfig, run_export
from aamflow.stages.extract.config import ExtractConfig
from aamflow.stages.extract.preprocess import TenCrop, resize_short_side, to_tchw
from aamflow.stages.extract.stage import run_extract
from aamflow.stages.extract.stream import crop_rows
from aamflow.stages.models.aam import apply_aam
from tests.corpus import subset_manifest
from tests.stages.anonymize.test_anonymize import make_adapter


def extract(manifest: Path, out: Path, **kw) -> Path:
    run_extract(ExtractConfig(manifest=manifest, out=out, quiet=True, loader_workers=0, **kw))
    return out


@pytest.fixture(scope="module")
def manifest(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return subset_manifest(tiny_corpus, tmp_path_factory.mktemp("m") / "m.yaml", 1)


@pytest.fixture(scope="module")
def ten(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(manifest, tmp_path_factory.mktemp("ten") / "features.zarr", crops=10)


@pytest.fixture(scope="module")
def one(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(manifest, tmp_path_factory.mktemp("one") / "features.zarr")


# ------------------------------------------------------------------------------- the views


def test_ten_crop_views_are_the_corners_and_centre_then_their_mirror_images() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 90, 120, 3), dtype=np.uint8)  # landscape
    tc = TenCrop(resize=64, crop=56)
    views = tc(frames)
    assert views.shape == (2 * 10, 3, 56, 56) and views.dtype == torch.uint8
    x = resize_short_side(to_tchw(frames), 64)  # [2, 3, 64, 85]
    h, w = x.shape[-2:]
    windows = {
        "top_left": (0, 0),
        "top_right": (0, w - 56),
        "bottom_left": (h - 56, 0),
        "bottom_right": (h - 56, w - 56),
        "centre": ((h - 56) // 2, (w - 56) // 2),
    }
    for f in range(2):
        for k, name in enumerate(CROP_NAMES):
            src = x[f].flip(-1) if name.startswith("mirror_") else x[f]
            top, left = windows[name.removeprefix("mirror_")]
            expected = src[:, top : top + 56, left : left + 56]
            assert torch.equal(views[f * 10 + k], expected), name
    # the I3D convention: short side 256 for 224 crops; our 112 crops get 128
    assert TenCrop.of(type("T", (), {"resize": 112, "crop": 112})()).resize == 128
    assert TenCrop.of(type("T", (), {"resize": 256, "crop": 224})()).resize == 256


def test_crop_rows_address_each_frames_ten_views_clip_major() -> None:
    gather = np.array([[0, 1, 2], [1, 2, 3]])
    rows = crop_rows(gather, 10)
    assert rows.shape == (20, 3)
    np.testing.assert_array_equal(rows[0], [0, 10, 20])  # clip 0, view 0
    np.testing.assert_array_equal(rows[13], [13, 23, 33])  # clip 1, view 3
    assert crop_rows(gather, 1) is gather


# -------------------------------------------------------------------------------- extract


def test_ten_crop_store_keeps_a_crop_axis_with_dimension_names(ten: Path, one: Path) -> None:
    import xarray as xr
    import zarr

    s, o = open_store(ten), open_store(one)
    assert s.crops == 10 and s.crop_names == CROP_NAMES and o.crops == 1
    assert s.sampling["crops"] == 10 and "crops" not in o.sampling
    assert s.meta["crop_views"]["resize_short"] == 128 and "crop_views" not in o.meta
    raw = s.dask("clip_features")
    assert raw.shape == (len(s.clips), 10, s.feature_dim)
    assert s.dask("static_features").shape == (len(s.static), 10, s.feature_dim)
    arr = zarr.open_group(str(ten / "parts" / s.part_names[0]), mode="r")["clip_features"]
    assert arr.metadata.dimension_names == ("clip", "crop", "feature")
    ds = xr.open_zarr(ten / "parts" / s.part_names[0], consolidated=False)
    assert ds["static_features"].dims == ("static", "crop", "feature")
    one_arr = zarr.open_group(str(one / "parts" / o.part_names[0]), mode="r")["clip_features"]
    assert one_arr.metadata.dimension_names == ("clip", "feature")  # unchanged layout
    # every view is its own encoding; a mirror image is not its original
    x = raw.compute()
    for a in range(10):
        for b in range(a + 1, 10):
            assert not np.allclose(x[:, a], x[:, b]), (CROP_NAMES[a], CROP_NAMES[b])
    # the reader's one view per clip is the centre crop, for train-adapter and eval
    np.testing.assert_array_equal(s.clip_features().compute(), x[:, CENTRE_CROP])
    np.testing.assert_array_equal(s.crop_view(x), x[:, CENTRE_CROP])
    row = int(s.videos["row"].iloc[1])
    assert s.video(row).clip_features.shape == (int(s.videos.loc[row, "clip_count"]), 512)
    assert s.video(row, all_crops=True).clip_features.shape[1:] == (10, 512)
    assert s.clips.equals(o.clips)  # same clips, times and frames as the one-crop store


def test_the_centre_view_is_the_encoder_run_on_the_centre_crop(ten: Path, manifest: Path) -> None:
    from aamflow.stages.extract.decode import iter_frames
    from aamflow.stages.extract.encoders import create_encoder

    s = open_store(ten)
    v = s.videos.iloc[0]
    idx = s.read("clip_frame_idx")[int(v["clip_start"])]  # the first clip's frames
    doc = yaml.safe_load(manifest.read_text())
    path = Path(doc["root"]) / doc["videos"][0]["path"]
    frames = np.stack([f.rgb for f in iter_frames(path, np.unique(idx), str(v["decoder"]))])
    enc = create_encoder("builtin")
    views = TenCrop.of(enc.transform)(frames[idx - idx.min()])  # [T * 10, 3, S, S]
    clip = views.reshape(len(idx), 10, 3, 112, 112)[:, CENTRE_CROP]  # [T, 3, S, S]
    x = enc.transform.normalize(clip.permute(1, 0, 2, 3)[None])
    got = enc.encode(x).numpy()[0]
    np.testing.assert_allclose(s.video(int(v["row"])).clip_features[0], got, atol=1e-5)


def test_crops_flag_and_manifest_field_are_checked(manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "x.zarr")]
    res = runner.invoke(cli, [*args, "--crops", "5"], obj={})
    assert res.exit_code == 2 and "--crops" in res.output
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["sampling"]["crops"] = 3
    bad.write_text(yaml.safe_dump(doc))
    res = runner.invoke(cli, ["extract", "--manifest", str(bad), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "sampling.crops" in res.output, res.output
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------ anonymize


def test_anonymize_rewrites_every_crop(ten: Path, tmp_path: Path) -> None:
    adapter = make_adapter(ten, out=tmp_path / "adapter")
    out = tmp_path / "anon.zarr"
    run_anonymize(AnonymizeConfig(store=ten, adapter=adapter, out=out, quiet=True))
    raw, anon = open_store(ten), open_store(out)
    module = _load_adapter(str(adapter), "cpu")
    for name in ("clip_features", "static_features"):
        x, y = raw.read(name), anon.read(name)
        assert y.shape == x.shape and y.shape[1] == 10
        for k in range(10):  # each crop is anonymized as a vector of its own
            ref = apply_aam(module, torch.from_numpy(np.ascontiguousarray(x[:, k])), 64).numpy()
            np.testing.assert_array_equal(y[:, k], ref)
        # no raw vector of any crop survives anywhere in the output
        raw_rows = {r.tobytes() for r in x.reshape(-1, x.shape[-1])}
        assert not raw_rows & {r.tobytes() for r in y.reshape(-1, y.shape[-1])}
    assert anon.crops == 10 and anon.meta["crop_views"] == raw.meta["crop_views"]


# --------------------------------------------------------------------------------- export


def test_exports_default_to_the_stores_crops(ten: Path, tmp_path: Path) -> None:
    s = open_store(ten)
    ad = s.videos[s.videos["task"] == "ad"].iloc[0]
    feats = s.video(int(ad["row"]), all_crops=True).clip_features
    kw = {"quiet": True, "allow_raw": True}
    rec = run_export(ExportConfig(store=ten, fmt="rtfm", out=tmp_path / "rtfm", **kw))
    assert rec["crops"] == {
        "count": 10,
        "store_crops": 10,
        "repeated": False,
        "names": list(CROP_NAMES),
    }
    got = np.load(tmp_path / f"rtfm/features/{ad['id']}_i3d.npy")
    np.testing.assert_array_equal(got, feats)  # [T, 10, C], every real crop
    assert "10 real crops per clip" in (tmp_path / "rtfm/README.md").read_text()

    rec = run_export(ExportConfig(store=ten, fmt="urdmu", out=tmp_path / "urdmu", **kw))
    name = rec["summary"]["names"][ad["id"]]
    for k in range(10):
        part = np.load(next((tmp_path / "urdmu/features").rglob(f"{name}__{k}.npy")))
        np.testing.assert_array_equal(part, feats[:, k])

    run_export(ExportConfig(store=ten, fmt="rtfm", out=tmp_path / "c1", crops=1, **kw))
    one = np.load(tmp_path / f"c1/features/{ad['id']}_i3d.npy")
    np.testing.assert_array_equal(one[:, 0], feats[:, CENTRE_CROP])
    tad = s.videos[s.videos["task"] == "tad"].iloc[0]
    run_export(ExportConfig(store=ten, fmt="actionformer", out=tmp_path / "af", **kw))
    af = np.load(tmp_path / f"af/features/{tad['id']}.npy")
    np.testing.assert_array_equal(af, s.video(int(tad["row"])).clip_features)  # centre crop

    runner = CliRunner()
    base = ["export", "--store", str(ten), "--allow-raw"]
    for extra in (
        ["--format", "rtfm", "--repeat-crops", "10"],  # real crops exist
        ["--format", "rtfm", "--crops", "5"],
        ["--format", "actionformer", "--crops", "10"],  # no crop axis
    ):
        res = runner.invoke(cli, [*base, *extra, "--out", str(tmp_path / "bad")], obj={})
        assert res.exit_code == 2 and res.output.startswith("error: "), res.output
        assert not (tmp_path / "bad").exists()


def test_a_one_crop_store_repeats_its_view_only_when_asked(one: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "export",
            "--store",
            str(one),
            "--format",
            "rtfm",
            "--crops",
            "10",
            "--out",
            str(tmp_path),
        ],
        obj={},
    )
    assert res.exit_code == 2 and "--repeat-crops 10" in res.output
    kw = {"quiet": True, "allow_raw": True}
    rec = run_export(ExportConfig(store=one, fmt="rtfm", out=tmp_path / "r", repeat_crops=10, **kw))
    assert rec["crops"]["repeated"] is True and rec["summary"]["crops_repeated"] is True
    line = (tmp_path / "r/list/ucf-i3d.list").read_text().splitlines()[0]
    x = np.load(line)
    assert x.shape[1] == 10 and all(np.array_equal(x[:, 0], x[:, k]) for k in range(10))
    assert "10 copies of one view" in (tmp_path / "r/README.md").read_text()


# --------------------------------------------------------------------------------- xarray


def test_to_xarray_of_a_ten_crop_store(ten: Path) -> None:
    s = open_store(ten)
    ds = s.to_xarray()
    assert ds["clip_features"].dims == ("clip", "crop", "feature")
    assert list(ds["crop"].values) == list(CROP_NAMES)
    np.testing.assert_array_equal(
        ds["clip_features"].sel(crop="centre").values, s.clip_features().compute()
    )


# ------------------------------------------------------------------ train-adapter and eval


def test_train_and_eval_use_the_centre_crop(tmp_path: Path) -> None:
    from aamflow.schemas.fake import fake_store
    from aamflow.stages.eval.config import EvalConfig
    from aamflow.stages.eval.data import gather
    from aamflow.stages.eval.stage import run_eval
    from aamflow.stages.train.config import TrainConfig
    from aamflow.stages.train.data import read_latents
    from aamflow.stages.train.stage import run_train

    kw = {"n_videos": 24, "part_size": 8, "seed": 1}
    ten = fake_store(tmp_path / "ten.zarr", crops=10, **kw)
    one = fake_store(tmp_path / "one.zarr", **kw)  # the same features, without the other views
    s10, s1 = open_store(ten), open_store(one)
    rows = s10.videos["row"].to_numpy()
    a, b = read_latents(s10, rows), read_latents(s1, rows)
    np.testing.assert_array_equal(a.clips, b.clips)
    np.testing.assert_array_equal(a.static, b.static)
    x, owner = gather(s10, "clip_features", s10.videos)
    assert x.shape == (len(s10.clips), s10.feature_dim)
    np.testing.assert_array_equal(x, gather(s1, "clip_features", s1.videos)[0])
    # so a short training run and the report match the one-crop store's exactly
    logs = []
    for store in (ten, one):
        out = store.with_suffix(".adapter")
        run_train(TrainConfig(store=store, out=out, epochs=2, batch_size=8, quiet=True))
        logs.append((out / "train_log.jsonl").read_text().splitlines())
    strip = [
        [
            {k: v for k, v in json_row(r).items() if k not in ("seconds", "videos_per_s")}
            for r in log
        ]
        for log in logs
    ]
    assert strip[0] == strip[1]
    fast = {"attackers": ("linear",), "epochs": 2, "quiet": True, "tasks": ("privacy", "ar")}
    r10 = run_eval(EvalConfig(store=ten, out=tmp_path / "r10", **fast))
    r1 = run_eval(EvalConfig(store=one, out=tmp_path / "r1", **fast))
    assert r10["privacy"] == r1["privacy"] and r10["utility"] == r1["utility"]


def json_row(line: str) -> dict:
    import json

    return json.loads(line)
