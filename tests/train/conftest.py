"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.training_data import write_synthetic_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """(train, val) synthetic datasets of 384 and 128 samples."""
    root = tmp_path_factory.mktemp("data")
    return write_synthetic_dataset(root / "train", 384, seed=0), write_synthetic_dataset(
        root / "val", 128, seed=1
    )
