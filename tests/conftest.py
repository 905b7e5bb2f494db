"""Repo-wide fixtures. Tests that need the real F1 data skip with the reason when it is absent.

Shared helpers import as `helpers.*`: in pytest's default "prepend" import mode every test folder
without __init__.py goes on sys.path, tests/ (this file's folder) included. Test folders have no
__init__.py (a package tests/server would shadow the product's `server`), so test modules import
by file name, which is therefore unique across folders; test modules never import each other.
"""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture()
def one_thread():
    """Tiny models run faster on one thread, and far more steadily on a shared 2-core machine.

    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
