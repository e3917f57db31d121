"""Every README command line that names an aamflow flag names one the CLI has, so the
documentation cannot drift from the CLI again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aamflow.pipeline.cli import cli

REPO = Path(__file__).resolve().parents[2]
# "aamflow [global flags] verb rest-of-line"; a flag is --name not glued to a word
COMMAND = re.compile(r"\baamflow((?:\s+--?[\w-]+)*)\s+([a-z][\w-]*)\b(.*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def readme_commands() -> list[tuple[str, str, str]]:
    """(global flags, verb, rest) for each README line that runs aamflow; continued lines
    (a trailing backslash) are joined first."""
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for m in COMMAND.finditer(line):
            if m.group(2) in cli.commands:
                found.append((m.group(1), m.group(2), m.group(3)))
    return found


def option_names(command: click.Command) -> set[str]:
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts)}


def test_the_readme_runs_aamflow_and_the_walker_finds_it() -> None:
    verbs = {verb for _, verb, _ in readme_commands()}
    # the cluster section's commands are among those checked
    assert {"extract", "anonymize", "train-adapter", "eval", "export", "synth"} <= verbs


def test_every_flag_a_readme_command_names_exists() -> None:
    missing = []
    for global_flags, verb, rest in readme_commands():
        for flag in FLAG.findall(global_flags):
            if flag not in option_names(cli) | {"--help"}:
                missing.append(f"aamflow {flag}")
        for flag in FLAG.findall(rest):
            if flag not in option_names(cli.commands[verb]) | {"--help"}:
                missing.append(f"aamflow {verb} {flag}")
    assert not missing, f"README names flags the CLI lacks: {sorted(set(missing))}"


def test_the_walker_catches_a_flag_that_does_not_exist() -> None:
    m = COMMAND.search("aamflow --quiet extract --manifest m.yaml --no-such-flag")
    assert m is not None and m.group(2) == "extract"
    assert "--no-such-flag" not in option_names(cli.commands["extract"])
    assert FLAG.findall(m.group(3)) == ["--manifest", "--no-such-flag"]


@pytest.mark.parametrize("verb", ["extract", "anonymize"])
def test_slurm_config_is_a_flag_of_every_verb_that_runs_part_tasks(verb: str) -> None:
    r = CliRunner().invoke(cli, [verb, "--help"])
    assert r.exit_code == 0 and "--slurm-config" in r.output and "--workers" in r.output


def test_the_readmes_job_script_command_runs_as_written() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    cmd = re.search(r"`(python -c \"from aamflow\.pipeline\.cluster import .*?\")`", text)
    assert cmd is not None, "the README's job-script command moved"
    code = re.search(r'-c "(.*)"', cmd.group(1)).group(1)
    pytest.importorskip("dask_jobqueue")
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "#SBATCH -p gpu" in r.stdout and "--resources GPU=1" in r.stdout
