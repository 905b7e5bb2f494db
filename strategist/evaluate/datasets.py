"""Evaluation inputs: a built dataset folder, or race folders turned into one on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strategist.data.dataset_format import is_dataset_dir, load_arrays, manifest_path
from strategist.errors import DataError
from strategist.evaluate.predictions import Arrays


def read_dataset_arrays(folder: Path) -> dict[str, np.ndarray]:
    """All shards of a dataset folder concatenated along the sample axis (docs/data-format.md)."""
    arrays, _manifest = load_arrays(folder)
    if len(arrays["pace_ref"]) == 0:
        raise DataError("dataset has no samples", file=str(manifest_path(folder)))
    return arrays


def load_eval_data(paths: list[Path], workdir: Path) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of the evaluation set and a one-line description of where they came from.

    One dataset folder is read as it is; race folders (or folders of race folders) are built into
    a dataset under `workdir` with the Data Engine first, so any race the FastF1 reader reads can be
    evaluated.
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"evaluation data not found: {', '.join(missing)}")
    if len(paths) == 1 and is_dataset_dir(paths[0]):
        return read_dataset_arrays(paths[0]), f"dataset {paths[0]}"
    datasets = [p for p in paths if is_dataset_dir(p)]
    if datasets:
        raise DataError("give either one dataset folder or race folders, not a mix", file=str(datasets[0]))
    from strategist.data.dataset import build_dataset, expand_race_dirs

    races = expand_race_dirs(paths)  # a race folder, or a folder of race folders
    out = workdir / "eval-dataset"
    build_dataset(races, out, workers=2)
    names = ", ".join(r.name for r in races)
    return read_dataset_arrays(out), f"{len(races)} race folder(s) built on the fly: {names}"


def races_of(arrays: Arrays) -> set[str]:
    return set(np.asarray(arrays["race"]).astype(str).tolist())


def check_no_race_leak(train: Arrays, evaluated: Arrays) -> None:
    """Refuse an evaluation whose races also appear in the training data (split must be by race)."""
    shared = races_of(train) & races_of(evaluated)
    if shared:
        raise DataError(
            f"{len(shared)} race(s) are both in the training data and in the evaluation set "
            f"(e.g. {sorted(shared)[:3]}); evaluation must be held out by race"
        )
