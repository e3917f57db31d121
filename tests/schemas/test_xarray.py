"""``FeatureStore.to_xarray()``: the logical store as one lazy Dataset, checked part by part."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import open_store
from tests.conftest import store_path


def part_arrays(path: Path, backend: str, part: str) -> dict[str, np.ndarray]:
    """Every array of one part, read without aamflow (xarray on zarr, h5py on HDF5)."""
    if backend == "zarr":
        import xarray as xr

        ds = xr.open_zarr(path / "parts" / part, consolidated=False)
        return {k: np.asarray(v.values) for k, v in ds.variables.items()}
    import h5py

    with h5py.File(path.with_name(path.name + ".parts") / f"{part}.h5", "r") as f:
        return {k: f[k].asstr()[:] if f[k].dtype.kind == "O" else f[k][:] for k in f.keys()}


@pytest.mark.parametrize("crops", [1, 10])
def test_to_xarray_is_every_part_concatenated(
    tmp_path: Path, backend_name: str, crops: int
) -> None:
    path = fake_store(
        store_path(tmp_path, backend_name), n_videos=14, part_size=5, fmt=backend_name, crops=crops
    )
    s = open_store(path)
    ds = s.to_xarray()
    # lazy: the big tables are dask arrays over the parts, one block or more per part
    for name in ("clip_features", "static_features", "clip_frame_idx", "frame_labels"):
        assert isinstance(ds[name].data, da.Array), name
    assert len(ds["clip_features"].data.chunks[0]) >= len(s.part_names)
    tail = ("crop", "feature") if crops > 1 else ("feature",)
    assert ds["clip_features"].dims == ("clip", *tail)
    assert ds["static_features"].dims == ("static", *tail)
    assert ds.sizes["video"] == 14 and ds.sizes["clip"] == len(s.clips)
    if crops > 1:
        assert ds.sizes["crop"] == 10 and ds["crop"].values[4] == "centre"
    else:
        assert "crop" not in ds.dims
    # coordinates: the video row and id on video; the clip's video, times and frames on clip
    np.testing.assert_array_equal(ds["video"].values, np.arange(14))
    assert list(ds["video_id"].values) == [f"v{i:05d}" for i in range(14)]
    for name, dim in (("clip_video", "clip"), ("clip_time", "clip"), ("static_video", "static")):
        assert name in ds.coords and ds[name].dims[0] == dim
    assert list(ds["bound"].values) == ["start", "end"]

    clip_starts, clip_counts = ds["video_clip_start"].values, ds["video_clip_count"].values
    offset = {t: 0 for t in ("video", "clip", "static", "segment", "video_frame")}
    for part in s.part_names:
        arrays = part_arrays(path, backend_name, part)
        n = {dim: None for dim in offset}
        for name, values in arrays.items():
            var = ds[name] if name != "video_row" else ds["video"]
            dim = var.dims[0]
            lo = offset[dim]
            got = var.isel({dim: slice(lo, lo + len(values))}).values
            if name.startswith("video_") and name.endswith("_start"):
                continue  # made global: checked below
            np.testing.assert_array_equal(got, values, err_msg=f"{part}/{name}")
            n[dim] = len(values)
        for dim, k in n.items():
            offset[dim] += k or 0
    assert offset["clip"] == ds.sizes["clip"] and offset["video"] == 14
    # global offsets index the concatenated tables
    for row in (0, 6, 13):
        lo, k = int(clip_starts[row]), int(clip_counts[row])
        got = ds["clip_features"].isel(clip=slice(lo, lo + k)).values
        np.testing.assert_array_equal(got, s.video(row, all_crops=True).clip_features)
        assert set(ds["clip_video"].isel(clip=slice(lo, lo + k)).values) == {row}
    meta = json.loads(ds.attrs["aamflow"])
    assert meta["provenance"]["store_uuid"] == ds.attrs["store_uuid"] == s.uuid
    assert ds["video_split"].attrs["flag_meanings"] == "train val test"
    assert ds["label_attr_skin_tone"].attrs["labels"] == ["light", "medium", "dark"]
    # selections work like on any xarray dataset (a lazy coordinate is computed to select)
    sel = ds.isel(clip=(ds["clip_video"] == 3).values)
    assert sel.sizes["clip"] == clip_counts[3]
    assert ds.sel(video=3)["video_id"].item() == "v00003"
