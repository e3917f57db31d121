"""extract's reliability promises: it never writes into an anonymized store, refuses a
video listed in two splits, is loud when every video failed, checks input_size, writes its
config atomically, and a full disk is one line and leaves a resumable store."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.errors import ConfigError
from aamflow.schemas.store import committed_parts, open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import run_anonymize
from tests.corpus import store_content_digest
from tests.stages.anonymize.test_anonymize import make_adapter
from tests.stages.extract.conftest import extract


def invoke(*args: str):
    return CliRunner().invoke(cli, ["--quiet", *args], obj={})


def test_extract_never_writes_into_an_anonymized_store(
    small_manifest: Path, reference_store: Path, tmp_path: Path
) -> None:
    adapter = make_adapter(reference_store, out=tmp_path / "adapter")
    anon = tmp_path / "A.zarr"
    run_anonymize(AnonymizeConfig(store=reference_store, adapter=adapter, out=anon, quiet=True))
    before = store_content_digest(anon)
    for extra in ([], ["--overwrite"], ["--overwrite", "--part", "0/2"], ["--part", "1/2"]):
        r = invoke("extract", "--manifest", str(small_manifest), "--out", str(anon), *extra)
        assert r.exit_code == 2, (extra, r.output)
        assert r.output.count("error:") == 1 and "anonymized store" in r.output, r.output
    r = invoke("extract", "--manifest", str(small_manifest), "--out", str(anon), "--commit-only")
    assert r.exit_code == 2 and "extract never writes into it" in r.output
    assert store_content_digest(anon) == before
    assert open_store(anon).provenance["anonymized"] is True


def manifest_with(tmp_path: Path, source: Path, videos: list[dict], **sampling) -> Path:
    doc = yaml.safe_load(source.read_text())
    doc["videos"] = videos
    doc.pop("video_lists", None)
    doc["sampling"] = {**doc.get("sampling", {}), **sampling}
    for key, value in list(doc["sampling"].items()):
        if value is None:
            del doc["sampling"][key]
    out = tmp_path / "m.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def first_video(small_manifest: Path) -> dict:
    return dict(yaml.safe_load(small_manifest.read_text())["videos"][0])


def test_one_video_in_two_splits_is_refused_unless_allowed(
    small_manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v = first_video(small_manifest)
    leak = [dict(v, id="a", split="train"), dict(v, id="b", split="test")]
    m = manifest_with(tmp_path, small_manifest, leak)
    out = tmp_path / "o.zarr"
    r = invoke("extract", "--manifest", str(m), "--out", str(out))
    assert (
        r.exit_code == 2
        and "train/test leak" in r.output
        and "--allow-duplicate-videos" in r.output
    )
    assert not out.exists()
    with caplog.at_level("WARNING", logger="aamflow.extract"):
        extract(m, out, allow_duplicate_videos=True)
    assert len(open_store(out)) == 2
    assert any("name the same file" in rec.message for rec in caplog.records)


def test_every_video_failing_prints_an_error_line_even_when_quiet(
    small_manifest: Path, tmp_path: Path
) -> None:
    gone = [
        {"id": "x", "path": "nope/x.mp4", "split": "train"},
        {"id": "y", "path": "nope/y.mp4", "split": "test"},
    ]
    m = manifest_with(tmp_path, small_manifest, gone)
    r = invoke("extract", "--manifest", str(m), "--out", str(tmp_path / "o.zarr"))
    assert r.exit_code == 1
    assert "error: every video failed (2 of 2)" in r.output


def test_input_size_is_honoured_as_the_encoders_or_refused(
    small_manifest: Path, tmp_path: Path
) -> None:
    v = first_video(small_manifest)
    with pytest.raises(
        ConfigError, match="input_size 224 does not match encoder builtin's input size 112"
    ):
        extract(manifest_with(tmp_path, small_manifest, [v], input_size=224), tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    extract(manifest_with(tmp_path, small_manifest, [v], input_size=None), tmp_path / "b.zarr")
    assert open_store(tmp_path / "b.zarr").sampling["input_size"] == 112


def test_the_run_config_is_written_atomically(
    small_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aamflow.schemas.atomic as atomic

    renamed = []
    real = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (renamed.append(Path(b)), real(a, b)))
    out = tmp_path / "o.zarr"
    extract(manifest_with(tmp_path, small_manifest, [first_video(small_manifest)]), out)
    config = tmp_path / "o.zarr.extract.json"
    assert config in renamed and json.loads(config.read_text())["out"] == str(out)


def test_a_full_disk_is_one_line_and_leaves_a_resumable_store(
    small_manifest: Path, reference_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aamflow.schemas.backends import zarr_

    real = zarr_._ZarrPartWriter.commit
    seen = {"n": 0}

    def full(self, attrs):
        seen["n"] += 1
        if seen["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.staging))
        return real(self, attrs)

    monkeypatch.setattr(zarr_._ZarrPartWriter, "commit", full)
    out = tmp_path / "o.zarr"
    with pytest.raises(OSError, match="No space left"):
        extract(small_manifest, out)
    assert committed_parts(out) == {"part-00000"}
    assert not any(p.name.startswith((".tmp-", ".lock-")) for p in (out / "parts").iterdir())
    monkeypatch.setattr(zarr_._ZarrPartWriter, "commit", real)
    extract(small_manifest, out)  # the same command resumes
    assert store_content_digest(out) == store_content_digest(reference_store)
