"""Evaluation inputs: a built dataset folder, or race folders turned into one on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from strategist.errors import DataError
from strategist.evaluate.predictions import Arrays

MANIFEST = "manifest.json"


def is_dataset_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def read_dataset_arrays(folder: Path) -> dict[str, np.ndarray]:
    """All shards of a dataset folder concatenated along the sample axis (docs/data-format.md)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"not a dataset folder ({MANIFEST} missing)", file=str(folder))
    manifest = json.loads(manifest_path.read_text())
    parts: dict[str, list[np.ndarray]] = {}
    for shard in manifest.get("shards", []):
        shard_path = folder / shard["file"]
        if not shard_path.is_file():
            raise DataError("shard listed in the manifest is missing", file=str(shard_path))
        with np.load(shard_path, allow_pickle=False) as npz:
            for name in npz.files:
                parts.setdefault(name, []).append(npz[name])
    if not parts:
        raise DataError("dataset has no samples", file=str(manifest_path))
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    for required in ("telemetry", "tactical", "pace_ref", "pace_target", "risk", "race", "regime"):
        if required not in arrays:
            raise DataError("dataset lacks a required array", file=str(folder), field=required)
    return arrays


def find_race_dirs(paths: list[Path]) -> list[Path]:
    """Race folders among `paths`: a path with laps.csv is a race; otherwise its children with laps.csv."""
    races: list[Path] = []
    for path in paths:
        if (path / "laps.csv").is_file():
            races.append(path)
        elif path.is_dir():
            races.extend(sorted(child for child in path.iterdir() if (child / "laps.csv").is_file()))
    return races


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
    races = find_race_dirs(paths)
    if not races:
        raise DataError(
            f"no race folder (with laps.csv) and no dataset (with {MANIFEST}) in {', '.join(map(str, paths))}"
        )
    from strategist.data import build_dataset

    out = workdir / "eval-dataset"
    build_dataset(races, out)
    return read_dataset_arrays(
        out
    ), f"{len(races)} race folder(s) built on the fly: {', '.join(r.name for r in races)}"


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
