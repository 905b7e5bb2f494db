"""Training data: a dataset folder (manifest.json + shard-*.npz, docs/data-format.md) held in memory.

Only the arrays training needs are read: telemetry, tactical, pace_ref, pace_target, risk,
tire_health (plus driver / lap / race, read lazily, to name a bad sample in an error message).

Inputs must be finite (a NaN in telemetry or tactical is a builder bug: DataError naming file,
driver, lap and field). Targets may be missing and are then left out of their loss term, counted
and logged, never silently: pace_target NaN (no clean next lap), tire_health NaN (real races carry
no tire truth), risk -1 (unknown).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from strategist import contract
from strategist.errors import DataError
from strategist.model.layers import STAT_KEYS

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
RISK_UNKNOWN = -1

# array -> (dtype kind, per-sample shape)
_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "telemetry": ("f", (contract.N_LAP_CONTEXT, contract.N_STEPS, len(contract.CHANNELS))),
    "tactical": ("f", (len(contract.TACTICAL_ROWS), len(contract.TACTICAL_COLS))),
    "context": ("f", (contract.N_CONTEXT,)),
    "pace_ref": ("f", ()),
    "pace_target": ("f", ()),
    "risk": ("i", ()),
    "tire_health": ("f", ()),
}


@dataclass
class MissingTargets:
    """How many samples lack each target (left out of that loss term only)."""

    pace: int = 0
    risk: int = 0
    tire: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"pace": self.pace, "risk": self.risk, "tire": self.tire}


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


def _sample_name(shard: Any, i: int) -> dict[str, Any]:
    """driver / lap of sample i, for error messages (best effort: those arrays are optional)."""
    out: dict[str, Any] = {}
    for key, target in (("driver", "driver"), ("lap", "lap")):
        try:
            out[target] = shard[key][i].item()
        except (KeyError, ValueError, IndexError):
            pass
    return out


def _read_shard(path: Path, expected_n: int, n_classes: int) -> dict[str, np.ndarray]:
    try:
        shard = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read shard: {exc}", file=str(path)) from exc
    arrays: dict[str, np.ndarray] = {}
    for name, (kind, sample_shape) in _ARRAYS.items():
        if name not in shard.files:
            raise DataError(f"array missing (have {sorted(shard.files)})", file=str(path), field=name)
        value = shard[name]
        if value.dtype.kind not in (kind, "u" if kind == "i" else kind):
            raise DataError(
                f"dtype {value.dtype}, expected {'float' if kind == 'f' else 'integer'}",
                file=str(path),
                field=name,
            )
        if value.shape != (expected_n, *sample_shape):
            raise DataError(
                f"shape {value.shape}, expected {(expected_n, *sample_shape)} (manifest n={expected_n})",
                file=str(path),
                field=name,
            )
        arrays[name] = value
    for name in ("telemetry", "tactical", "context", "pace_ref"):
        finite = np.isfinite(arrays[name].reshape(expected_n, -1)).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"non-finite input in sample {i} ({int((~finite).sum())} sample(s) in this shard)",
                file=str(path),
                field=name,
                **_sample_name(shard, i),
            )
    risk = arrays["risk"]
    bad = (risk < RISK_UNKNOWN) | (risk >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"risk class {int(risk[i])} in sample {i}; expected 0..{n_classes - 1} or {RISK_UNKNOWN} (unknown)",
            file=str(path),
            field="risk",
            **_sample_name(shard, i),
        )
    return arrays


def compute_stats(telemetry: np.ndarray, tactical: np.ndarray, pace_delta: np.ndarray) -> dict[str, Any]:
    """The manifest "stats" block from arrays (used when a manifest has none)."""
    valid = pace_delta[np.isfinite(pace_delta)]
    return {
        "telemetry_mean": telemetry.mean(axis=(0, 1, 2), dtype=np.float64).tolist(),
        "telemetry_std": telemetry.std(axis=(0, 1, 2), dtype=np.float64).tolist(),
        "tactical_mean": tactical.mean(axis=0, dtype=np.float64).tolist(),
        "tactical_std": tactical.std(axis=0, dtype=np.float64).tolist(),
        "pace_delta_mean": float(valid.mean()) if valid.size else 0.0,
        "pace_delta_std": float(valid.std()) if valid.size > 1 else 1.0,
    }


def load_dataset(folder: str | Path, n_risk_classes: int = len(contract.RISK_CLASSES)) -> StrategistDataset:
    """Read every shard listed in `folder`/manifest.json into memory, checking shapes and values."""
    root = Path(folder)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise DataError("not a dataset folder (manifest.json missing)", file=str(root))
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc}", file=str(manifest_path)) from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"format_version {version!r}, expected {FORMAT_VERSION}", file=str(manifest_path))
    shards = manifest.get("shards") or []
    if not shards:
        raise DataError("no shards listed", file=str(manifest_path), field="shards")

    parts: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
    for entry in shards:
        arrays = _read_shard(root / entry["file"], int(entry["n"]), n_risk_classes)
        for name, value in arrays.items():
            parts[name].append(value)
    data = {name: np.concatenate(values) for name, values in parts.items()}
    n = len(data["telemetry"])
    if "n_samples" in manifest and int(manifest["n_samples"]) != n:
        raise DataError(
            f"n_samples {manifest['n_samples']} but shards hold {n}",
            file=str(manifest_path),
            field="n_samples",
        )

    pace_delta = (data["pace_target"].astype(np.float64) - data["pace_ref"]).astype(np.float32)
    missing = MissingTargets(
        pace=int((~np.isfinite(pace_delta)).sum()),
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
        stats = compute_stats(data["telemetry"], data["tactical"], pace_delta)
    else:
        absent = [k for k in STAT_KEYS if k not in stats]
        if absent:
            raise DataError(f"stats lack {absent}", file=str(manifest_path), field="stats")

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
