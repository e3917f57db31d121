"""The command line: help for every verb, inspect, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli
from aamflow.schemas.fake import fake_store

VERBS = ["synth", "extract", "train-adapter", "anonymize", "eval", "export", "inspect", "demo"]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), obj={})


def test_top_level_help_lists_every_verb() -> None:
    r = run("--help")
    assert r.exit_code == 0
    for verb in VERBS:
        assert verb in r.output


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_and_documents_its_options(verb: str) -> None:
    r = run(verb, "--help")
    assert r.exit_code == 0, r.output
    cmd = cli.commands[verb]
    assert cmd.help and len(cmd.help) > 20
    for param in cmd.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"{verb} --{param.name} has no help text"


def test_version() -> None:
    r = run("--version")
    assert r.exit_code == 0 and "aamflow" in r.output


def test_help_is_instant_and_imports_nothing_heavy() -> None:
    code = (
        "import sys; from aamflow.pipeline.cli import cli;"
        "heavy = [m for m in ('torch', 'zarr', 'dask', 'h5py') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inspect_a_store(tmp_path: Path) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=6, part_size=3)
    r = run("inspect", str(p))
    assert r.exit_code == 0, r.output
    assert "videos    6" in r.output
    assert "[36, 32] float32" in r.output
    assert "verdict   valid" in r.output
    r = run("inspect", "--json", str(p))
    assert '"valid": true' in r.output


def test_not_a_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("inspect", str(tmp_path))
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert r.output.startswith("error: ") and "not an aamflow feature store" in r.output


def test_bad_manifest_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text(
        "schema: aamflow.manifest/1\nvideos:\n  - {id: a, path: ../x.mp4, split: train}\n"
    )
    r = run("inspect", str(bad))
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert "escapes the root" in r.output and "Traceback" not in r.output


def test_debug_log_level_shows_the_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--log-level", "debug", "inspect", str(tmp_path)], obj={})
    assert r.exit_code == 2


@pytest.mark.parametrize("device", ["cuda:7", "gpu"])
def test_a_device_that_is_not_there_is_refused_before_writing(tmp_path: Path, device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    p = fake_store(tmp_path / "f.zarr", n_videos=3, part_size=3)
    r = run(
        "anonymize",
        "--store",
        str(p),
        "--device",
        device,
        "--allow-identity",
        "--out",
        str(tmp_path / "o.zarr"),
    )
    assert r.exit_code == 2 and "--device" in r.output
    assert not (tmp_path / "o.zarr").exists()
    r = run(
        "extract",
        "--manifest",
        "data_manifest.yaml",
        "--out",
        str(tmp_path / "e.zarr"),
        "--device",
        device,
    )
    assert r.exit_code == 2 and "--device" in r.output and not (tmp_path / "e.zarr").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["train-adapter", "--store", "S", "--epochs", "0"],
        ["train-adapter", "--store", "S", "--arch", "nope"],
        ["train-adapter", "--store", "S", "--tasks", "ar,dance"],
        ["extract", "--manifest", "data_manifest.yaml", "--batch-size", "-1"],
        ["extract", "--manifest", "data_manifest.yaml", "--encoder", "nope"],
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str]) -> None:
    p = fake_store(tmp_path / "f.zarr", n_videos=3, part_size=3)
    args = [str(p) if a == "S" else a for a in args]
    if args[0] == "extract":
        args += ["--out", str(tmp_path / "e.zarr")]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "e.zarr").exists()
