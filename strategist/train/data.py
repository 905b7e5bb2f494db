"""Training data: a dataset folder (manifest.json + shard-*.npz, docs/data-format.md) held in memory.

Only the arrays training needs are read (TRAIN_FIELDS), through strategist.data.dataset_format,
which owns the format and its checks: dtype and shape of every array, finite inputs (a NaN in
telemetry or tactical is a builder bug: DataError naming file, driver, lap and field), the risk
range. This module only turns the arrays into tensors and counts missing targets. Targets may be missing and are then left out of their loss term, counted
and logged, never silently: pace_target NaN (no clean next lap), tire_health NaN (real races carry
no tire truth), risk -1 (unknown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from strategist import contract
from strategist.data.dataset_format import (
    RISK_UNKNOWN,
    compute_stats,
    load_arrays,
    manifest_path,
    read_manifest,
)
from strategist.errors import DataError
from strategist.model.layers import STAT_KEYS

log = logging.getLogger(__name__)

__all__ = ["RISK_UNKNOWN", "MissingTargets", "StrategistDataset", "load_dataset"]

# The arrays training reads (the format checks dtype, shape, finite inputs and the risk range).
TRAIN_FIELDS = (
    "telemetry",
    "tactical",
    "context",
    "pace_ref",
    "pace_target",
    "pace_forecastable",
    "risk",
    "tire_health",
)


@dataclass
class MissingTargets:
    """How many samples lack each target (left out of that loss term only)."""

    pace: int = 0  # all pace targets left out, the unforecastable ones included
    pace_unforecastable: int = 0
    risk: int = 0
    tire: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "pace": self.pace,
            "pace_unforecastable": self.pace_unforecastable,
            "risk": self.risk,
            "tire": self.tire,
        }


@dataclass
class StrategistDataset(Dataset):
    """In-memory samples; indexing with a list/tensor of indices returns a whole batch (dict of tensors).

    Batch dict: telemetry [b, 5, 100, 5], tactical [b, 2, 2], pace_delta [b] (s, NaN = missing),
    risk [b] int64 (-1 = unknown), tire_health [b] (NaN = missing).
    """

    telemetry: torch.Tensor
    tactical: torch.Tensor
    context: torch.Tensor
    pace_delta: torch.Tensor
    risk: torch.Tensor
    tire_health: torch.Tensor
    stats: dict[str, Any]
    source: str = ""
    missing: MissingTargets = field(default_factory=MissingTargets)

    def __len__(self) -> int:
        return int(self.telemetry.shape[0])

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        return {
            "telemetry": self.telemetry[index],
            "tactical": self.tactical[index],
            "context": self.context[index],
            "pace_delta": self.pace_delta[index],
            "risk": self.risk[index],
            "tire_health": self.tire_health[index],
        }


def load_dataset(folder: str | Path, n_risk_classes: int = len(contract.RISK_CLASSES)) -> StrategistDataset:
    """Read every shard listed in `folder`/manifest.json into memory, checking shapes and values."""
    root = Path(folder)
    manifest = read_manifest(root)
    if not manifest.get("shards"):
        raise DataError("no shards listed", file=str(manifest_path(root)), field="shards")
    data, _ = load_arrays(root, TRAIN_FIELDS, manifest=manifest)
    n = len(data["telemetry"])
    risk = data["risk"]
    if n_risk_classes < len(contract.RISK_CLASSES) and (risk >= n_risk_classes).any():
        raise DataError(
            f"risk class {int(risk.max())}; this model has {n_risk_classes} classes",
            file=str(manifest_path(root)),
            field="risk",
        )

    pace_delta = (data["pace_target"].astype(np.float64) - data["pace_ref"]).astype(np.float32)
    # Unforecastable targets (an in-lap or a neutralisation that starts in the next lap: decisions and
    # events the inputs cannot know) are left out of the pace loss, like missing ones.
    unforecastable = ~data["pace_forecastable"].astype(bool) & np.isfinite(pace_delta)
    pace_delta[unforecastable] = np.nan
    missing = MissingTargets(
        pace=int((~np.isfinite(pace_delta)).sum()),
        pace_unforecastable=int(unforecastable.sum()),
        risk=int((data["risk"] == RISK_UNKNOWN).sum()),
        tire=int((~np.isfinite(data["tire_health"])).sum()),
    )
    if missing.pace or missing.risk or missing.tire:
        log.info(
            "%s: %d samples; missing targets left out of their loss term: %s", root, n, missing.as_dict()
        )

    stats = manifest.get("stats")
    if stats is None:
        log.warning("%s: manifest has no stats; computing them from this dataset", root)
        stats = compute_stats([{**data, "pace_delta": pace_delta}])
    else:
        absent = [k for k in STAT_KEYS if k not in stats]
        if absent:
            raise DataError(f"stats lack {absent}", file=str(manifest_path(root)), field="stats")

    return StrategistDataset(
        telemetry=torch.from_numpy(data["telemetry"].astype(np.float32, copy=False)),
        tactical=torch.from_numpy(data["tactical"].astype(np.float32, copy=False)),
        context=torch.from_numpy(data["context"].astype(np.float32, copy=False)),
        pace_delta=torch.from_numpy(pace_delta),
        risk=torch.from_numpy(data["risk"].astype(np.int64, copy=False)),
        tire_health=torch.from_numpy(data["tire_health"].astype(np.float32, copy=False)),
        stats=stats,
        source=str(root),
        missing=missing,
    )
