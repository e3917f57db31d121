"""anonymize's reliability promises: no private label or source path in its output (nor in
any export of it), no raw rows under its label, no laundered damage, no non-finite rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.checkpoint import default_adapter_dir, load_checkpoint, save_checkpoint
from aamflow.schemas.errors import CheckpointError, StoreError
from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import committed_parts, open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import run_anonymize
from tests.stages.anonymize.test_anonymize import make_adapter

PRIVATE = ("label_attr_skin_tone", "label_attr_gender", "label_group", "video_path", "video_error")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    p = fake_store(tmp_path / "features.zarr", n_videos=12, part_size=4)
    # provenance paths a shared store must not carry (extract records them)
    from aamflow.schemas.backends.zarr_ import ZarrBackend

    attrs = ZarrBackend().read_attrs(p)
    attrs["aamflow"]["provenance"].update(
        manifest_path="/home/alice/corpus/data_manifest.yaml", manifest_name="alice-corpus"
    )
    ZarrBackend().write_attrs(p, attrs)
    make_adapter(p)
    return p


def every_value(path: Path) -> tuple[set[str], str]:
    """The array names of every part, and all text a reader can get out of the store: root
    and part attributes plus every string array's values."""
    s = open_store(path)
    names: set[str] = set()
    text = [json.dumps(s.attrs)]
    for name in s.part_names:
        part = s.backend.open_part(s.path, name)
        names |= set(part.names())
        text.append(json.dumps(dict(part.attrs)))
        for arr in part.names():
            data = np.asarray(part[arr][:])
            if data.dtype.kind in "OUT":
                text += [str(x) for x in data.tolist()]
        part.close()
    return names, "\n".join(text)


def test_no_private_label_or_source_path_survives_in_the_store_or_any_export(
    raw: Path, tmp_path: Path
) -> None:
    anon = Path(run_anonymize(AnonymizeConfig(store=raw, quiet=True))["out"])
    names, text = every_value(anon)
    assert not names & set(PRIVATE)
    source = open_store(raw)
    secrets = [*source.videos["path"], str(raw), str(default_adapter_dir(raw)), "alice"]
    for secret in secrets:
        assert secret not in text, secret
    assert sorted(open_store(anon).stripped) == sorted(PRIVATE)
    # a stripped column's sha256 over a few videos could be brute-forced into its values
    s = open_store(anon)
    for name in s.part_names:
        attrs = s._part(name).attrs
        for key in ("sha256", "source_part_sha256", "rows"):
            assert not set(attrs[key]) & set(PRIVATE), (name, key)
    for fmt in ("actionformer", "rtfm", "urdmu"):
        out = tmp_path / f"export-{fmt}"
        result = CliRunner().invoke(
            cli, ["--quiet", "export", "--store", str(anon), "--format", fmt, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        for f in out.rglob("*"):
            if f.is_file() and f.suffix != ".npy":
                body = f.read_text(errors="replace")
                for secret in [*secrets, "skin_tone", "gender", "label_group"]:
                    assert secret not in body, (fmt, f.name, secret)


def test_keep_private_labels_copies_them_and_inspect_says_what_was_stripped(
    raw: Path, tmp_path: Path
) -> None:
    kept = run_anonymize(
        AnonymizeConfig(store=raw, out=tmp_path / "kept.zarr", keep_private_labels=True, quiet=True)
    )
    s, r = open_store(kept["out"]), open_store(raw)
    for col in ("label_attr_gender", "label_attr_skin_tone", "label_group"):
        assert (s.videos[col] == r.videos[col]).all()
    assert "path" not in s.videos.columns  # source paths are stripped even then
    default = run_anonymize(AnonymizeConfig(store=raw, out=tmp_path / "anon.zarr", quiet=True))
    shown = CliRunner().invoke(cli, ["inspect", default["out"]])
    assert "stripped  label_attr_gender, label_attr_skin_tone, label_group" in shown.output
    # a resume with the other setting would mix stores: refused
    with pytest.raises(StoreError, match="other columns stripped"):
        run_anonymize(
            AnonymizeConfig(
                store=raw, out=tmp_path / "anon.zarr", keep_private_labels=True, quiet=True
            )
        )


def delete_a_chunk(store: Path, part: str, array: str) -> None:
    chunk = next(
        f
        for f in (store / "parts" / part / array).rglob("*")
        if f.is_file() and f.name != "zarr.json"
    )
    chunk.unlink()


@pytest.mark.parametrize(
    "array", ["clip_features", "label_attr_gender", "label_action", "frame_labels", "clip_time"]
)
def test_a_missing_chunk_in_any_array_is_refused_not_laundered(
    raw: Path, tmp_path: Path, array: str
) -> None:
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(raw, damaged)
    shutil.copytree(default_adapter_dir(raw), default_adapter_dir(damaged))
    part = "part-00002" if array != "frame_labels" else "part-00000"
    delete_a_chunk(damaged, part, array)
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(
        cli, ["--quiet", "anonymize", "--store", str(damaged), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and f"{array}: 1 chunk(s) missing" in result.output
    assert part not in committed_parts(out)  # the damaged part is never written
    with pytest.raises(StoreError, match="chunk"):  # and no reader serves fill values (-1)
        open_store(damaged).videos  # noqa: B018


def test_a_corrupted_chunk_is_one_error_line(raw: Path, tmp_path: Path) -> None:
    chunk = next(
        f
        for f in (raw / "parts" / "part-00001" / "static_features").rglob("*")
        if f.is_file() and f.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    result = CliRunner().invoke(
        cli, ["anonymize", "--store", str(raw), "--out", str(tmp_path / "o.zarr")]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "part part-00001, array static_features" in result.output
    assert "Traceback" not in result.output


def test_non_finite_weights_inputs_and_outputs_are_refused(raw: Path, tmp_path: Path) -> None:
    state, meta, _ = load_checkpoint(default_adapter_dir(raw))
    nan = {k: v.clone() for k, v in state.items()}
    next(iter(nan.values()))[0] = float("nan")
    bad = save_checkpoint(tmp_path / "nan-adapter", nan, meta)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_checkpoint(bad)
    # finite weights whose output overflows: refused per part, nothing of it committed
    huge = save_checkpoint(tmp_path / "huge", {k: v * 1e30 for k, v in state.items()}, meta)
    out = tmp_path / "o.zarr"
    with pytest.raises(CheckpointError, match="non-finite"):
        run_anonymize(AnonymizeConfig(store=raw, adapter=huge, out=out, quiet=True))
    assert committed_parts(out) == set()


def test_a_raw_store_is_never_replaced_or_extended_by_anonymize(raw: Path, tmp_path: Path) -> None:
    other = fake_store(tmp_path / "other.zarr", n_videos=12, part_size=4, seed=5)
    before = open_store(other).read("clip_features")
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(
            cli, ["anonymize", "--store", str(raw), "--out", str(other), *extra]
        )
        assert result.exit_code == 2 and "raw feature store written by extract" in result.output
    np.testing.assert_array_equal(open_store(other).read("clip_features"), before)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: m.update(input_dim="abc"), "field 'input_dim'"),
        (lambda m: m.update(hparams=[1, 2]), "field 'hparams'"),
        (lambda m: m.update(weights_digest=""), "field 'weights_digest'"),
        (lambda m: m["hparams"].update(hidden=10**9), "hparams"),
    ],
)
def test_a_bad_adapter_json_is_one_error_line(raw: Path, tmp_path: Path, edit, fragment) -> None:
    meta_file = default_adapter_dir(raw) / "adapter.json"
    meta = json.loads(meta_file.read_text())
    edit(meta)
    meta_file.write_text(json.dumps(meta))
    result = CliRunner().invoke(
        cli, ["anonymize", "--store", str(raw), "--out", str(tmp_path / "o.zarr")]
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and fragment in result.output
    assert not (tmp_path / "o.zarr").exists()


def test_disk_full_is_one_line_and_the_output_resumes(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from aamflow.schemas.backends import zarr_

    out = tmp_path / "o.zarr"
    straight = run_anonymize(AnonymizeConfig(store=raw, out=tmp_path / "straight.zarr", quiet=True))
    real = zarr_._ZarrPartWriter.commit
    calls = {"n": 0}

    def full(self, attrs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.staging))
        return real(self, attrs)

    monkeypatch.setattr(zarr_._ZarrPartWriter, "commit", full)
    result = CliRunner().invoke(cli, ["anonymize", "--store", str(raw), "--out", str(out)])
    assert result.exit_code == 2 and result.output.count("error:") == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert not list((out / "parts").glob(".tmp-*"))  # no staging left behind
    monkeypatch.setattr(zarr_._ZarrPartWriter, "commit", real)
    run_anonymize(AnonymizeConfig(store=raw, out=out, quiet=True))
    a, b = open_store(out), open_store(straight["out"])
    np.testing.assert_array_equal(a.read("clip_features"), b.read("clip_features"))
    assert a.videos.equals(b.videos)


def test_identity_check_still_applies_with_stripping(raw: Path, tmp_path: Path) -> None:
    ident = make_adapter(raw, trained=False, out=tmp_path / "ident")
    with pytest.raises(CheckpointError, match="identity"):
        run_anonymize(AnonymizeConfig(store=raw, adapter=ident, out=tmp_path / "o", quiet=True))
    assert torch.isfinite(next(iter(load_checkpoint(ident)[0].values()))).all()
