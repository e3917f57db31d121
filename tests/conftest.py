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
