"""Shared fixtures: tiny generated stores and corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests run on 2 cores beside other work: keep torch from oversubscribing them
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["zarr", "hdf5"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every store contract test runs once per backend."""
    return request.param


def store_path(tmp: Path, backend: str, name: str = "features") -> Path:
    return tmp / (f"{name}.zarr" if backend == "zarr" else f"{name}.h5")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic corpus (43 videos), rendered once per session; its manifest path."""
    from aamflow.stages.synth import SynthConfig, run_synth

    return run_synth(
        SynthConfig(out=tmp_path_factory.mktemp("corpus"), preset="tiny", seed=0, quiet=True)
    )
