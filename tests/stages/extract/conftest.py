"""Shared by the extract tests: a small manifest over the tiny corpus (tests/conftest.py), with a
missing and a corrupt video, and the store one plain run extracts from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aamflow.stages.extract.config import ExtractConfig
from aamflow.stages.extract.stage import run_extract
from tests.corpus import subset_manifest


@pytest.fixture(scope="session")
def small_manifest(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three videos of each task plus a missing and a corrupt file."""
    d = tmp_path_factory.mktemp("small")
    bad = tiny_corpus.parent / "corrupt.mp4"  # inside the corpus root
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    extra = [
        {"id": "missing", "path": "nope/missing.mp4", "split": "train", "task": "ar"},
        {"id": "corrupt", "path": bad.name, "split": "test", "task": "ar"},
    ]
    return subset_manifest(tiny_corpus, d / "m.yaml", 3, extra=extra)


def extract(manifest: Path, out: Path, **kw) -> dict:
    return run_extract(
        ExtractConfig(manifest=manifest, out=out, part_size=4, quiet=True, loader_workers=0, **kw)
    )


@pytest.fixture(scope="session")
def reference_store(small_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "features.zarr"
    extract(small_manifest, out)
    return out
