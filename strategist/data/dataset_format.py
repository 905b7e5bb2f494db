"""The dataset format (docs/data-format.md): what a dataset folder holds, written and read here only.

    <folder>/manifest.json       format_version, n_samples, shards, races, stats, ...
    <folder>/shard-00000.npz     one array per ARRAY_SPECS name, every array with the same first axis

Every writer (the Data Engine's builder, the synthetic datasets of tests) goes through
write_shard() and write_manifest(); every reader (training, evaluation, export, the pipeline) goes
through read_manifest() and load_arrays(). The normalisation statistics a model copies into its
buffers come from compute_stats(), the one place that decides how they are computed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strategist.contract import (
    CHANNELS,
    N_CONTEXT,
    N_LAP_CONTEXT,
    N_STEPS,
    RISK_CLASSES,
    STD_FLOOR,
    TACTICAL_COLS,
    TACTICAL_ROWS,
)
from strategist.errors import DataError

FORMAT_VERSION = 2  # 2: the timing context array
MANIFEST_NAME = "manifest.json"
STINT_HISTORY = 8  # stint_fc_laps width
RISK_UNKNOWN = -1  # risk label of a sample whose next lap has no truth

# name -> (dtype, per-sample shape); "str" arrays are numpy unicode.
ARRAY_SPECS: dict[str, tuple[str, tuple[int, ...]]] = {
    "telemetry": ("float32", (N_LAP_CONTEXT, N_STEPS, len(CHANNELS))),
    "tactical": ("float32", (len(TACTICAL_ROWS), len(TACTICAL_COLS))),
    "context": ("float32", (N_CONTEXT,)),
    "pace_ref": ("float32", ()),
    "pace_target": ("float32", ()),
    "risk": ("int64", ()),
    "tire_health": ("float32", ()),
    "fc_laps": ("float32", (N_LAP_CONTEXT,)),
    "stint_fc_laps": ("float32", (STINT_HISTORY,)),
    "tyre_life": ("float32", ()),
    "noise_sigma": ("float32", ()),
    "clean_target": ("float32", ()),
    "race": ("str", ()),
    "track": ("str", ()),
    "driver": ("str", ()),
    "lap": ("int32", ()),
    "regime": ("str", ()),
    # 1 when the pace target is forecastable from the inputs (strategist.data.labels.pace_forecastable)
    "pace_forecastable": ("bool", ()),
}
# Model inputs: a NaN here is a writer bug, never a missing value (targets may be NaN / RISK_UNKNOWN).
FINITE_ARRAYS = ("telemetry", "tactical", "context", "pace_ref")
# The keys of one manifest "races" entry.
RACE_FIELDS = ("race", "source", "track", "n", "simulated", "has_telemetry", "skipped", "seconds")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def is_dataset_dir(folder: str | Path) -> bool:
    return manifest_path(folder).is_file()


def empty_array(name: str) -> np.ndarray:
    """A zero-sample array of `name` with its dtype and per-sample shape."""
    dtype, shape = ARRAY_SPECS[name]
    return np.zeros((0, *shape), dtype="<U1" if dtype == "str" else dtype)


def _dtype_kinds(dtype: str) -> tuple[str, ...]:
    """numpy dtype kinds accepted for a spec dtype (any float width, any integer, unicode)."""
    if dtype == "str":
        return ("U",)
    kind = np.dtype(dtype).kind
    return ("i", "u") if kind == "i" else (kind,)


def check_array(name: str, value: np.ndarray, n: int, *, file: str | None = None) -> None:
    """Raise DataError unless `value` is a known array of dtype kind and shape [n, *per-sample shape]."""
    if name not in ARRAY_SPECS:
        raise DataError(f"unknown dataset field {name!r}; known: {list(ARRAY_SPECS)}", file=file, field=name)
    dtype, sample_shape = ARRAY_SPECS[name]
    if value.dtype.kind not in _dtype_kinds(dtype):
        expected = {"f": "float", "i": "integer", "U": "string", "b": "bool"}[_dtype_kinds(dtype)[0]]
        raise DataError(f"dtype {value.dtype}, expected {expected}", file=file, field=name)
    if value.shape != (n, *sample_shape):
        raise DataError(
            f"shape {value.shape}, expected {(n, *sample_shape)} (manifest n={n})", file=file, field=name
        )


def _sample_name(arrays: Mapping[str, Any], i: int) -> dict[str, Any]:
    """driver / lap of sample i, for error messages (best effort: those arrays are optional)."""
    out: dict[str, Any] = {}
    for key in ("driver", "lap"):
        try:
            out[key] = arrays[key][i].item()
        except (KeyError, ValueError, IndexError):
            pass
    return out


def check_values(arrays: Mapping[str, np.ndarray], *, file: str | None = None, names: Any = None) -> None:
    """Inputs finite and risk a known class or RISK_UNKNOWN; the error names sample, driver and lap.

    `names`: where driver / lap are looked up for the message (default: `arrays`)."""
    names = arrays if names is None else names
    for name in FINITE_ARRAYS:
        if name not in arrays:
            continue
        value = arrays[name]
        finite = np.isfinite(value.reshape(len(value), -1)).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"non-finite input in sample {i} ({int((~finite).sum())} sample(s) in this shard)",
                file=file,
                field=name,
                **_sample_name(names, i),
            )
    if "risk" in arrays:
        risk = arrays["risk"]
        bad = (risk < RISK_UNKNOWN) | (risk >= len(RISK_CLASSES))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"risk class {int(risk[i])} in sample {i}; expected 0..{len(RISK_CLASSES) - 1} "
                f"or {RISK_UNKNOWN} (unknown)",
                file=file,
                field="risk",
                **_sample_name(names, i),
            )


# --- writing ----------------------------------------------------------------------------------


def write_shard(path: str | Path, arrays: Mapping[str, np.ndarray]) -> int:
    """Check `arrays` against ARRAY_SPECS and write them as one .npz (atomically); returns n.

    Writers may leave out arrays they have no data for (a reader asks for the fields it needs);
    whatever they write must match the spec, with one sample count for all."""
    path = Path(path)
    if "pace_ref" not in arrays:
        raise DataError("a shard needs at least pace_ref", file=str(path), field="pace_ref")
    n = len(arrays["pace_ref"])
    for name, value in arrays.items():
        check_array(name, np.asarray(value), n, file=str(path))
    check_values(arrays, file=str(path))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return n


def race_entry(
    race: str,
    *,
    track: str,
    n: int,
    simulated: bool,
    has_telemetry: bool = True,
    source: str | None = None,
    skipped: Mapping[str, int] | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """One manifest "races" entry (RACE_FIELDS)."""
    return {
        "race": race,
        "source": source,
        "track": track,
        "n": int(n),
        "simulated": bool(simulated),
        "has_telemetry": bool(has_telemetry),
        "skipped": dict(skipped or {}),
        "seconds": seconds,
    }


def write_manifest(
    folder: str | Path,
    *,
    shards: Sequence[Mapping[str, Any]],
    races: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    """Write manifest.json (atomically) and return it.

    shards: {"file", "n", ...} of the shards with samples, in sample order; races: race_entry()
    dicts of every race read (also those that gave no samples); stats: compute_stats() of the
    samples; fields: further top-level keys (fuel_model, skipped, corrected, build, ...)."""
    path = manifest_path(folder)
    for entry in races:
        missing = [k for k in RACE_FIELDS if k not in entry]
        if missing:
            raise DataError(
                f"race entry {entry.get('race')!r} lacks {missing}", file=str(path), field="races"
            )
    manifest = {
        "format_version": FORMAT_VERSION,
        "n_samples": int(sum(int(s["n"]) for s in shards)),
        "shards": [dict(s) for s in shards],
        "races": [dict(r) for r in races],
        "stats": dict(stats),
        **fields,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return manifest


def write_dataset(
    folder: str | Path,
    arrays: Mapping[str, np.ndarray],
    *,
    n_shards: int = 1,
    simulated: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """Samples held in memory -> `n_shards` shards + manifest (races and stats from the arrays)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    n = len(arrays["pace_ref"])
    bounds = np.linspace(0, n, n_shards + 1).astype(int)
    shards = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        count = write_shard(root / shard_name(i), {k: v[lo:hi] for k, v in arrays.items()})
        shards.append({"file": shard_name(i), "n": count})
    race_ids = arrays["race"] if "race" in arrays else np.full(n, "synthetic")
    tracks = arrays["track"] if "track" in arrays else race_ids
    races = []
    for race in sorted(set(np.asarray(race_ids).astype(str).tolist())):
        mask = race_ids == race
        races.append(race_entry(race, track=str(tracks[mask][0]), n=int(mask.sum()), simulated=simulated))
    stats = compute_stats([arrays])
    return write_manifest(root, shards=shards, races=races, stats=stats, **fields)


# --- statistics -------------------------------------------------------------------------------


def robust_centre_scale(values: np.ndarray) -> tuple[Any, Any]:
    """Median and 1.4826 x MAD along axis 0 (the s.d. of a normal sample, blind to outliers).

    A scale below STD_FLOOR (a flag that is almost always 0, a slot feature that is constant) becomes
    1.0, so that feature passes through centred but unscaled instead of being blown up."""
    centre = np.median(values, axis=0)
    scale = 1.4826 * np.median(np.abs(values - centre), axis=0)
    return centre, np.where(scale < STD_FLOOR, 1.0, scale)


def compute_stats(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Normalisation statistics (the manifest "stats" block) over every sample of `parts`.

    Each part holds telemetry [n, 5, 100, 5], tactical [n, 2, 2], context [n, K] (optional), and
    either pace_delta [m] or pace_ref + pace_target [n] (delta = target - ref; NaN deltas are left
    out). Telemetry and tactical: mean and s.d. from float64 running sums (shards stream through one
    at a time), every s.d. floored at STD_FLOOR. The pace delta and the context: robust centre and
    scale (robust_centre_scale), because pit and safety-car laps move the next lap by 20-60 s: a
    plain s.d. (~7 s on real races) would squeeze the racing laps the corridor is for (~0.4 s) into
    a sliver of the head's range. The keys keep the names *_mean / *_std. Without any finite pace
    delta (or only one) the pace statistics are the neutral 0 s / 1 s. Returns {} without samples."""
    n = n_rows = 0
    tel_sum = np.zeros(len(CHANNELS))
    tel_sq = np.zeros(len(CHANNELS))
    tac_sum = np.zeros((len(TACTICAL_ROWS), len(TACTICAL_COLS)))
    tac_sq = np.zeros_like(tac_sum)
    deltas: list[np.ndarray] = []
    contexts: list[np.ndarray] = []
    for part in parts:
        tel = np.asarray(part["telemetry"], dtype=np.float64).reshape(-1, len(CHANNELS))  # [n*5*100, 5]
        tac = np.asarray(part["tactical"], dtype=np.float64)  # [n, 2, 2]
        if "pace_delta" in part:
            delta = np.asarray(part["pace_delta"], dtype=np.float64)
        else:
            delta = np.asarray(part["pace_target"], dtype=np.float64) - part["pace_ref"]
        deltas.append(delta[np.isfinite(delta)])
        if "context" in part:
            contexts.append(np.asarray(part["context"], dtype=np.float64))
        n += tac.shape[0]
        n_rows += tel.shape[0]
        tel_sum += tel.sum(0)
        tel_sq += (tel**2).sum(0)
        tac_sum += tac.sum(0)
        tac_sq += (tac**2).sum(0)
    if n == 0:
        return {}

    def std(sq: Any, mean: Any, count: int) -> Any:
        return np.maximum(np.sqrt(np.maximum(sq / count - mean**2, 0.0)), STD_FLOOR)

    tel_mean, tac_mean = tel_sum / n_rows, tac_sum / n
    delta = np.concatenate(deltas)
    delta_centre, delta_scale = robust_centre_scale(delta) if delta.size > 1 else (0.0, 1.0)
    stats = {
        "n": n,
        "telemetry_mean": tel_mean.tolist(),
        "telemetry_std": std(tel_sq, tel_mean, n_rows).tolist(),
        "tactical_mean": tac_mean.tolist(),
        "tactical_std": std(tac_sq, tac_mean, n).tolist(),
        "pace_delta_mean": float(delta_centre),
        "pace_delta_std": float(delta_scale),
    }
    if contexts:
        context_centre, context_scale = robust_centre_scale(np.concatenate(contexts))
        stats["context_mean"] = context_centre.tolist()
        stats["context_std"] = context_scale.tolist()
    return stats


def shard_stats(folder: str | Path, shards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """compute_stats() over the listed shards of `folder`, one shard in memory at a time."""
    fields = ("telemetry", "tactical", "context", "pace_ref", "pace_target")

    def parts() -> Iterable[dict[str, np.ndarray]]:
        for s in shards:
            with np.load(Path(folder) / s["file"]) as z:
                yield {k: z[k] for k in fields if k in z.files}

    return compute_stats(parts())


# --- reading ----------------------------------------------------------------------------------


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a dataset folder; DataError when it is missing, unreadable or of another version."""
    path = manifest_path(folder)
    if not path.is_file():
        raise DataError(
            f"no {MANIFEST_NAME}: not a dataset folder (or its build did not finish)", file=str(path)
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc}", file=str(path)) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"format_version {manifest.get('format_version')!r}, this code reads {FORMAT_VERSION}",
            file=str(path),
            field="format_version",
        )
    return manifest


def load_arrays(
    folder: str | Path,
    fields: Sequence[str] | None = None,
    *,
    manifest: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, manifest): the shards concatenated along the sample axis; `fields` limits which
    arrays are read (default: all of ARRAY_SPECS); with `limit`, shards are read in order only
    until at least `limit` samples are in (a sample of a large dataset without reading all of it).

    Each array is checked against ARRAY_SPECS and the manifest's sample counts, model inputs for
    finiteness and risk for its range; a DataError names the shard, field and, where known, the
    sample's driver and lap."""
    folder = Path(folder)
    manifest = dict(manifest) if manifest is not None else read_manifest(folder)
    names = list(fields) if fields else list(ARRAY_SPECS)
    unknown = [f for f in names if f not in ARRAY_SPECS]
    if unknown:
        raise DataError(f"unknown dataset field(s) {unknown}; known: {list(ARRAY_SPECS)}", field=unknown[0])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    read = 0
    for entry in manifest.get("shards") or []:
        if limit is not None and read >= limit:
            break
        path = folder / entry["file"]
        n = int(entry["n"])
        try:
            with np.load(path, allow_pickle=False) as z:
                for name in names:
                    if name not in z.files:
                        raise DataError(f"array missing (have {sorted(z.files)})", file=str(path), field=name)
                shard = {name: z[name] for name in names}
                for name, value in shard.items():
                    check_array(name, value, n, file=str(path))
                check_values(shard, file=str(path), names=z)
        except DataError:
            raise
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read shard: {type(exc).__name__}: {exc}", file=str(path)) from exc
        for name, value in shard.items():
            parts[name].append(value)
        read += n
    arrays = {name: np.concatenate(parts[name]) if parts[name] else empty_array(name) for name in names}
    if limit is None and "n_samples" in manifest and int(manifest["n_samples"]) != read:
        raise DataError(
            f"n_samples {manifest['n_samples']} but shards hold {read}",
            file=str(manifest_path(folder)),
            field="n_samples",
        )
    return arrays, manifest


def subset_dataset(source: str | Path, races: Sequence[str], out: str | Path) -> dict[str, Any]:
    """A dataset of the samples of `races` only (with its own statistics), written to `out`.

    What leave-races-out cross-validation trains and tests on: a race is never split across the
    two sides. Every listed race must be in `source`; its manifest's fuel models are carried over."""
    arrays, manifest = load_arrays(source)
    known = sorted(set(arrays["race"].tolist()))
    unknown = [r for r in races if r not in known]
    if unknown:
        raise DataError(f"races {unknown} are not in this dataset (it has {known})", file=str(source))
    keep = np.isin(arrays["race"], list(races))
    simulated = {r["race"]: bool(r["simulated"]) for r in manifest.get("races", [])}
    fuel = {r: m for r, m in manifest.get("fuel_model", {}).items() if r in races}
    return write_dataset(
        out,
        {k: v[keep] for k, v in arrays.items()},
        simulated=all(simulated.get(r, True) for r in races),
        fuel_model=fuel,
        subset_of=str(Path(source).resolve()),
    )
