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
