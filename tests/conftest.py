"""Shared fixtures. Tests that need the real F1 data skip with the reason when it is absent."""

from __future__ import annotations

import pytest

from strategist.paths import DATA_ENV_VAR, f1_2023_dir, tracks_dir


@pytest.fixture(scope="session")
def real_races_dir():
    path = f1_2023_dir()
    if not path.exists():
        pytest.skip(f"real F1 2023 data not found at {path} (set ${DATA_ENV_VAR} to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def real_tracks_dir():
    path = tracks_dir()
    if not path.exists():
        pytest.skip(f"track geometry not found at {path} (set ${DATA_ENV_VAR} to the shared data folder)")
    return path
