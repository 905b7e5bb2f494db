"""Where things live: the shared data (outside the project) and the shipped artefacts (inside it)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV_VAR = "STRATEGIST_DATA"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BASE_CHECKPOINT_DIR = ASSETS_DIR / "virtual-strategist-base"  # pre-trained on simulated seasons
REAL_CHECKPOINT_DIR = ASSETS_DIR / "virtual-strategist-real"  # trained on real races
SERVED_CHECKPOINT_DIR = REAL_CHECKPOINT_DIR  # what `strategist serve` / `export` use by default
MODEL_REPOSITORY_DIR = PROJECT_ROOT / "model_repository"


def data_root() -> Path:
    """Root of the real-data folder (f1-2023/, tracks/, tum-race-params/).

    `$STRATEGIST_DATA` when set, else `../shared/data` next to the project root. The folder may be
    absent (a fresh machine): callers that need it check `.exists()` and say so.
    """
    override = os.environ.get(DATA_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def f1_2023_dir() -> Path:
    return data_root() / "f1-2023"


def tracks_dir() -> Path:
    return data_root() / "tracks"


def race_params_dir() -> Path:
    return data_root() / "tum-race-params"
