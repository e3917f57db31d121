"""Environment errors and hostile stores at the command line: one ``error:`` line, exit 2,
never a traceback; inspect reports unfinished and non-finite stores instead of failing."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.pipeline.errors import MAX_MESSAGE, one_line
from aamflow.schemas.fake import FAKE_SPACES, _fake_video, fake_store
from aamflow.schemas.store import (
    create_store,
    index_store,
    new_store_attrs,
    open_part_writer,
    plan_parts,
)

# verb -> (module whose run function the CLI calls, that function, the verb's arguments)
VERBS = {
    "synth": ("aamflow.stages.synth", "run_synth", ["--out", "o", "--preset", "tiny"]),
    "extract": ("aamflow.stages.extract.stage", "run_extract", ["--manifest", "m.yaml"]),
    "train-adapter": ("aamflow.stages.train.stage", "run_train", ["--store", "S"]),
    "anonymize": ("aamflow.stages.anonymize.stage", "run_anonymize", ["--store", "S"]),
    "eval": ("aamflow.stages.eval.stage", "run_eval", ["--store", "S"]),
    "export": (
        "aamflow.stages.export",
        "run_export",
        ["--store", "S", "--format", "rtfm", "--out", "o"],
    ),
    "inspect": ("aamflow.stages.inspect", "run_inspect", ["S"]),
    "demo": ("aamflow.pipeline.demo", "run_demo", ["--out", "o"]),
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), obj={})


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_full_or_read_only_disk_is_one_line_in_every_verb(
    verb: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    module, name, args = VERBS[verb]

    def fail(*_a, **_k):
        raise OSError(code, __import__("os").strerror(code), "/data/features.zarr/parts/x")

    monkeypatch.setattr(importlib.import_module(module), name, fail)
    if verb == "train-adapter":  # the CLI builds its config before the call
        import aamflow.stages.train.config as tc

        monkeypatch.setattr(tc.TrainConfig, "from_cli", classmethod(lambda cls, **k: None))
    if verb == "eval":
        import aamflow.stages.eval.config as ec

        monkeypatch.setattr(ec.EvalConfig, "from_cli", classmethod(lambda cls, **k: None))
    r = run(verb, *args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "/data/features.zarr/parts/x" in lines[0] and "Traceback" not in r.output


def test_an_error_line_is_bounded() -> None:
    line = one_line(ValueError("x" * 10**6))
    assert len(line) <= MAX_MESSAGE and line.endswith("...")


def unfinished_store(path: Path) -> Path:
    plan = plan_parts(9, 3)
    enc = {"name": "fake", "dim": 8, "weights_digest": "x", "clip_len": 16}
    attrs = new_store_attrs(encoder=enc, sampling={}, label_spaces=FAKE_SPACES, plan=plan)
    create_store(path, attrs)
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(16, 8)).astype(np.float32)
    with open_part_writer(path, plan[0]) as w:  # one part committed, then the run died
        for row in range(3):
            w.add(_fake_video(rng, row, 9, 8, 3, 2, ("ar",), dirs, 1.0))
        w.commit()
    return path


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_inspect_an_unfinished_store_says_it_is_incomplete(tmp_path: Path, backend: str) -> None:
    p = unfinished_store(tmp_path / ("f.zarr" if backend == "zarr" else "f.h5"))
    r = run("inspect", "--deep", str(p))
    assert r.exit_code == 2 and not isinstance(r.exception, Exception), r.output  # a report
    assert "verdict   INCOMPLETE" in r.output and "1/3 parts committed" in r.output
    assert "videos    3" in r.output
    info = json.loads(run("inspect", "--json", str(p)).output)
    assert info["complete"] is False and info["parts"] == {"planned": 3, "committed": 1}


def test_inspect_deep_reports_non_finite_features(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=3, part_size=3, tasks=("ar",))
    plan = plan_parts(3, 3)[0]
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(16, 32)).astype(np.float32)
    with open_part_writer(p, plan) as w:
        for row in range(3):
            rec = _fake_video(rng, row, 3, 32, 6, 4, ("ar",), dirs, 2.0)
            rec.static_features[0, 0] = np.inf
            w.add(rec)
        w.commit()
    assert "verdict   valid" in run("inspect", str(p)).output
    r = run("inspect", "--deep", str(p))
    assert r.exit_code == 2 and "static_features: 3 non-finite value(s)" in r.output


def test_inspect_a_truncated_zarr_json_is_one_line(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=3, part_size=3)
    (p / "zarr.json").write_text((p / "zarr.json").read_text()[:50])
    r = run("inspect", str(p))
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output.startswith("error: ") and "zarr.json: damaged" in r.output


@pytest.mark.parametrize(
    ("video_id", "fragment"), [("ad_x\n/etc/passwd", "control characters"), ("x" * 300, "bytes")]
)
def test_export_refuses_ids_that_are_not_file_names(
    tmp_path: Path, video_id: str, fragment: str
) -> None:
    plan = plan_parts(2, 2)
    enc = {"name": "fake", "dim": 8, "weights_digest": "x", "clip_len": 16}
    p = tmp_path / "f.zarr"
    create_store(p, new_store_attrs(encoder=enc, sampling={}, label_spaces=FAKE_SPACES, plan=plan))
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(16, 8)).astype(np.float32)
    with open_part_writer(p, plan[0]) as w:
        for row in range(2):
            rec = _fake_video(rng, row, 2, 8, 3, 2, ("ad",), dirs, 1.0)
            if row == 1:
                rec.id = video_id  # a store written before ids were checked
            w.add(rec)
        w.commit()
    index_store(p)
    for fmt in ("rtfm", "urdmu", "actionformer"):
        out = tmp_path / f"out-{fmt}"
        r = run("export", "--store", str(p), "--format", fmt, "--out", str(out))
        if fmt == "actionformer":  # it exports only tad videos: the ad id never becomes a name
            continue
        assert r.exit_code == 2 and r.output.count("\n") == 1, (fmt, r.output)
        assert fragment in r.output and not out.exists()
