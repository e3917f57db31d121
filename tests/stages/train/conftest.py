"""Tiny fake stores shared by the train-adapter tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aamflow.schemas.fake import fake_store


@pytest.fixture(scope="session")
def train_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 videos (18 train) of 32-d features: AR, TAD and AD videos, 4 static clips each."""
    return fake_store(tmp_path_factory.mktemp("train") / "features.h5", n_videos=30, dim=32)


@pytest.fixture(scope="session")
def ar_only_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AR videos only: the store has no TAD segments and no anomaly labels."""
    path = tmp_path_factory.mktemp("train_ar") / "features.h5"
    return fake_store(path, n_videos=12, dim=16, tasks=("ar",))
