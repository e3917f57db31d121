"""anonymize: same schema and labels, features = AAM(raw), deterministic, safe refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.checkpoint import AdapterMetadata, default_adapter_dir, save_checkpoint
from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import run_anonymize
from aamflow.stages.models.aam import apply_aam, build_aam


def make_adapter(store: Path, *, trained: bool = True, out: Path | None = None, **enc) -> Path:
    """An adapter for ``store``: the identity, or with random residual weights ("trained")."""
    s = open_store(store)
    torch.manual_seed(0)
    module = build_aam("residual_mlp", s.feature_dim)
    if trained:
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
    meta = AdapterMetadata(
        arch=module.arch,
        hparams=module.hparams,
        input_dim=s.feature_dim,
        encoder={**s.encoder, **enc},
        train_store_uuid=s.uuid,
        loss_weights={"lc": 100.0, "t": 1.0, "b": 1.0},
    )
    return save_checkpoint(out or default_adapter_dir(store), module.state_dict(), meta)


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def feature_bytes(path: Path) -> bytes:
    s = open_store(path)
    return s.read("clip_features").tobytes() + s.read("static_features").tobytes()


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    p = fake_store(tmp_path / "features.zarr", n_videos=12, part_size=4)
    make_adapter(p)
    return p


def test_same_schema_rows_labels_and_features_equal_aam_of_raw(raw: Path) -> None:
    before = tree_digest(raw)
    summary = run_anonymize(AnonymizeConfig(store=raw, quiet=True))
    out = Path(summary["out"])
    assert out.name == "features.anon.zarr"
    a, r = open_store(out), open_store(raw)
    # every column but the private labels and source paths, which are stripped
    gone = {"attr_skin_tone", "attr_gender", "group", "path", "error"}
    gone = {c for c in r.videos.columns if c.removeprefix("label_") in gone}
    assert set(r.videos.columns) - set(a.videos.columns) == gone
    assert a.videos.equals(r.videos.drop(columns=sorted(gone)))
    assert a.segments.equals(r.segments) and a.clips.equals(r.clips)
    from aamflow.stages.anonymize.stage import _load_adapter

    module = _load_adapter(str(default_adapter_dir(raw)), "cpu")
    x = torch.from_numpy(r.read("clip_features"))
    np.testing.assert_array_equal(a.read("clip_features"), apply_aam(module, x, 64).numpy())
    assert not np.allclose(a.read("static_features"), r.read("static_features"))
    prov = a.provenance
    assert prov["anonymized"] is True and prov["source_store_uuid"] == r.uuid
    assert prov["store_uuid"] != r.uuid and prov["adapter_digest"].startswith("sha256:")
    assert tree_digest(raw) == before  # the input is untouched


def test_no_raw_feature_row_lands_in_the_output(raw: Path) -> None:
    out = Path(run_anonymize(AnonymizeConfig(store=raw, quiet=True))["out"])
    a, r = open_store(out), open_store(raw)
    for name in ("clip_features", "static_features"):
        raw_rows = {row.tobytes() for row in r.read(name)}
        assert not any(row.tobytes() in raw_rows for row in a.read(name))


def test_output_bytes_do_not_depend_on_batch_size_or_resume(raw: Path, tmp_path: Path) -> None:
    one = run_anonymize(
        AnonymizeConfig(store=raw, out=tmp_path / "a.zarr", batch_size=1, quiet=True)
    )
    big = run_anonymize(
        AnonymizeConfig(
            store=raw, out=tmp_path / "b.zarr", batch_size=1000, rows_per_read=7, quiet=True
        )
    )
    assert feature_bytes(Path(one["out"])) == feature_bytes(Path(big["out"]))
    # a crash after two parts: the rerun only writes the rest
    part = run_anonymize(
        AnonymizeConfig(store=raw, out=tmp_path / "c.zarr", part_slice="0/2", quiet=True)
    )
    assert part["indexed"] is False and part["parts_written"] == 2
    rest = run_anonymize(AnonymizeConfig(store=raw, out=tmp_path / "c.zarr", quiet=True))
    assert rest["parts_written"] == 1 and rest["indexed"]
    assert feature_bytes(tmp_path / "c.zarr") == feature_bytes(Path(one["out"]))


def test_hdf5_in_and_out_and_conversion(tmp_path: Path) -> None:
    h5 = fake_store(tmp_path / "f.h5", n_videos=6, part_size=3, fmt="hdf5")
    make_adapter(h5)
    out = Path(run_anonymize(AnonymizeConfig(store=h5, quiet=True))["out"])
    assert out.name == "f.anon.h5" and open_store(out).format == "hdf5"
    conv = Path(run_anonymize(AnonymizeConfig(store=h5, fmt="zarr", quiet=True))["out"])
    assert conv.name == "f.anon.zarr"
    assert feature_bytes(conv) == feature_bytes(out)


def invoke(*args: str):
    return CliRunner().invoke(cli, ["anonymize", *args], obj={})


def test_refusals_exit_2_with_one_line(raw: Path, tmp_path: Path) -> None:
    # wrong encoder identity
    bad = make_adapter(raw, out=tmp_path / "other.adapter", name="videomae")
    r = invoke("--store", str(raw), "--adapter", str(bad))
    assert r.exit_code == 2 and "trained for encoder name 'videomae'" in r.output
    # untrained adapter
    ident = make_adapter(raw, trained=False, out=tmp_path / "ident.adapter")
    r = invoke("--store", str(raw), "--adapter", str(ident))
    assert r.exit_code == 2 and "still the identity" in r.output
    assert (
        invoke(
            "--store",
            str(raw),
            "--adapter",
            str(ident),
            "--allow-identity",
            "--out",
            str(tmp_path / "i.zarr"),
        ).exit_code
        == 0
    )
    # writing into the input
    r = invoke("--store", str(raw), "--out", str(raw / "x.zarr"))
    assert r.exit_code == 2 and "overlaps the input" in r.output
    # re-anonymizing with the same adapter
    assert invoke("--store", str(raw)).exit_code == 0
    anon = raw.with_name("features.anon.zarr")
    r = invoke(
        "--store",
        str(anon),
        "--adapter",
        str(default_adapter_dir(raw)),
        "--out",
        str(tmp_path / "again.zarr"),
    )
    assert r.exit_code == 2 and "already anonymized by this adapter" in r.output
    # no adapter at all
    r = invoke("--store", str(anon), "--out", str(tmp_path / "z.zarr"))
    assert r.exit_code == 2 and "no adapter checkpoint" in r.output
    for res in (r,):
        assert res.output.strip().count("\n") == 0


def test_inspect_shows_provenance(raw: Path) -> None:
    run_anonymize(AnonymizeConfig(store=raw, quiet=True))
    r = CliRunner().invoke(cli, ["inspect", str(raw.with_name("features.anon.zarr"))], obj={})
    assert r.exit_code == 0
    assert "anonymized  yes: adapter sha256:" in r.output and open_store(raw).uuid in r.output


@pytest.mark.slow
def test_two_dask_workers_give_the_same_bytes(raw: Path, tmp_path: Path) -> None:
    one = run_anonymize(AnonymizeConfig(store=raw, out=tmp_path / "w1.zarr", quiet=True))
    two = run_anonymize(AnonymizeConfig(store=raw, out=tmp_path / "w2.zarr", workers=2, quiet=True))
    assert feature_bytes(Path(one["out"])) == feature_bytes(Path(two["out"]))
