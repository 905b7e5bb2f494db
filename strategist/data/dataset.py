"""Build datasets (docs/data-format.md) from race folders: one shard per race + the manifest.

    build_dataset(race_dirs, out_dir)      # resumable: finished races are skipped on rerun
    arrays, manifest = load_arrays(out_dir)   # strategist.data.dataset_format

Per race: read it, align every lap of every car once (cache), then for each driver and lap L with a
next lap L+1 make one sample through strategist.data.engine.build_model_inputs, the same function
the gateway calls. Everything skipped (races without telemetry, laps that fail alignment, samples
without a lap time) is counted per reason, logged, and written to the manifest. What a dataset
folder holds, and how it is written and read, is strategist.data.dataset_format's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strategist.contract import CHANNELS, N_STEPS
from strategist.data.context import context_vector, driver_lap_timings
from strategist.data.dataset_format import (
    ARRAY_SPECS,
    FORMAT_VERSION,
    STINT_HISTORY,
    empty_array,
    race_entry,
    shard_name,
    shard_stats,
    write_manifest,
    write_shard,
)
from strategist.data.engine import align_raw_lap, build_model_inputs
from strategist.data.fastf1_reader import Race, read_race
from strategist.data.labels import label_table, pace_forecastable, regime
from strategist.data.stack import LapInfo, choose_stack_laps
from strategist.errors import DataError

log = logging.getLogger(__name__)

PROGRESS_DIR = "progress"


@dataclass(frozen=True)
class BuildConfig:
    segment: tuple[float, float] | None = None
    strict: bool = False  # raise on the first bad lap instead of skipping and counting it

    def key(self) -> str:
        """Changes whenever a setting that changes the samples changes (decides what a rerun reuses)."""
        text = json.dumps({"format": FORMAT_VERSION, "n_steps": N_STEPS, "segment": self.segment})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- finding races ----------------------------------------------------------------------------


def expand_race_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Race folders from a mix of race folders (with laps.csv) and season folders (of race folders)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "laps.csv").exists():
            out.append(p)
        elif p.is_dir():
            found = sorted(c for c in p.iterdir() if (c / "laps.csv").exists())
            if not found:
                raise DataError("neither a race folder (laps.csv) nor a folder of race folders", file=str(p))
            out.extend(found)
        else:
            raise DataError("race folder not found", file=str(p))
    return out


def race_ids(race_dirs: Sequence[Path]) -> list[str]:
    """Folder names, prefixed by the parent folder where two races share a name."""
    names = [p.name for p in race_dirs]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in race_dirs]


# --- one race -> samples ----------------------------------------------------------------------


def race_samples(
    race: Race, config: BuildConfig, race_id: str | None = None
) -> tuple[dict[str, np.ndarray], Counter[str], Counter[str]]:
    """All samples of one race as arrays (ARRAY_SPECS), the counts of what was skipped (by reason)
    and of what was corrected on the way (e.g. throttle_clipped)."""
    skipped: Counter[str] = Counter()
    corrected: Counter[str] = Counter()
    rows: dict[str, list[Any]] = {name: [] for name in ARRAY_SPECS}
    rid = race_id or race.race_id
    if not race.has_telemetry:
        skipped["races_without_telemetry"] += 1
        log.warning("%s: no telemetry files, the race gives no samples", race.source)
        return _to_arrays(rows), skipped, corrected

    table = label_table(race)
    for driver in race.drivers:
        if not race.driver_has_telemetry(driver):
            skipped["drivers_without_telemetry"] += 1
            log.warning("%s: driver %s has no telemetry file, skipped", race.source, driver)
            continue
        try:
            aligned = _align_driver(race, driver, config, skipped, corrected)
        except DataError as exc:  # the car's telemetry file itself is unreadable
            if config.strict:
                raise
            skipped["drivers_unreadable_telemetry"] += 1
            log.warning("driver skipped: %s", exc)
            continue
        _driver_samples(race, rid, driver, table[table["Driver"] == driver], aligned, rows, skipped)
    return _to_arrays(rows), skipped, corrected


def _driver_samples(
    race: Race,
    race_id: str,
    driver: str,
    dlaps: Any,
    aligned: dict[int, np.ndarray],
    rows: dict[str, list[Any]],
    skipped: Counter[str],
) -> None:
    """Append one sample per lap L of `driver` that has a next lap L+1 (dlaps: its label-table rows)."""
    dlaps = dlaps.sort_values("LapNumber")
    records = {int(r.LapNumber): r for r in dlaps.itertuples(index=False)}
    infos = [
        LapInfo(
            number=n,
            stint=int(r.Stint),
            is_pit_in=bool(r.is_pit_in),
            is_pit_out=bool(r.is_pit_out),
            is_neutralised=bool(r.is_neutralised),
            has_telemetry=n in aligned,
        )
        for n, r in records.items()
    ]
    timings = driver_lap_timings(dlaps)
    race_laps = int(race.laps["LapNumber"].max())
    clean_fc = {
        n: (np.nan if (r.is_pit_in or r.is_pit_out or r.is_neutralised or n <= 1) else float(r.FcLapTime))
        for n, r in records.items()
    }
    for lap, l_row in records.items():
        t_row = records.get(lap + 1)
        if t_row is None:
            continue  # the driver's last lap: nothing to predict
        if lap not in aligned:
            skipped["samples_lap_L_without_telemetry"] += 1
            continue
        if not (np.isfinite(l_row.FcLapTime) and np.isfinite(t_row.FcLapTime)):
            skipped["samples_without_lap_time"] += 1
            continue
        if t_row.Risk < 0 or not np.isfinite(l_row.TireHealth):
            skipped["samples_without_truth"] += 1
            continue
        choice = choose_stack_laps(lap, infos, driver=driver)
        ahead, behind = race.neighbours(driver, lap)
        telemetry, tactical = build_model_inputs([aligned[n] for n in choice.laps], ahead, behind)
        fc_slots = [
            np.nan if sub else float(records[n].FcLapTime)
            for n, sub in zip(choice.laps, choice.substituted, strict=True)
        ]
        # stint_fc_laps: the last STINT_HISTORY laps of L's stint up to L, oldest first, NaN for laps
        # that are not clean (in/out-lap, SC/VSC/red, lap 1) and NaN padding at the front.
        stint = [clean_fc[n] for n, r in records.items() if n <= lap and r.Stint == l_row.Stint][
            -STINT_HISTORY:
        ]
        rows["telemetry"].append(telemetry)
        rows["tactical"].append(tactical)
        rows["context"].append(
            context_vector(
                [timings[n] for n in choice.laps],
                fuel=race.fuel_model,
                race_laps=race_laps,
                where=f"{race_id} driver {driver} lap {lap}",
            )
        )
        rows["pace_ref"].append(l_row.FcLapTime)
        rows["pace_target"].append(t_row.FcLapTime)
        rows["risk"].append(int(t_row.Risk))
        rows["tire_health"].append(l_row.TireHealth)
        rows["fc_laps"].append(fc_slots)
        rows["stint_fc_laps"].append([np.nan] * (STINT_HISTORY - len(stint)) + stint)
        rows["tyre_life"].append(l_row.TyreLife)
        rows["noise_sigma"].append(t_row.NoiseSigma)
        rows["clean_target"].append(t_row.FcCleanLapTime)
        rows["race"].append(race_id)
        rows["track"].append(race.track)
        rows["driver"].append(driver)
        rows["lap"].append(lap + 1)
        rows["regime"].append(regime(l_row, t_row))
        rows["pace_forecastable"].append(pace_forecastable(l_row, t_row))


def _align_driver(
    race: Race, driver: str, config: BuildConfig, skipped: Counter[str], corrected: Counter[str]
) -> dict[int, np.ndarray]:
    """Lap number -> aligned [N_STEPS, 5] for every lap of `driver` that aligns; each lap once.

    A lap that fails (too short, time backwards, NaN ...) is counted and logged; an unreadable
    telemetry file (missing columns, corrupt) raises, and the caller skips the driver."""
    aligned: dict[int, np.ndarray] = {}
    number = race.driver_number(driver)
    race.driver_telemetry(driver)  # load (and validate) the file once, outside the per-lap handling
    for lap in race.driver_laps(driver)["LapNumber"]:
        try:
            raw = race.lap_telemetry(driver, int(lap))
            aligned[int(lap)] = align_raw_lap(raw, segment=config.segment, counters=corrected)
        except DataError as exc:
            if config.strict:
                raise
            skipped["laps_failed_alignment"] += 1
            log.warning("lap skipped (car %s): %s", number, exc)
    return aligned


def _to_arrays(rows: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    out = {}
    for name, (dtype, _shape) in ARRAY_SPECS.items():
        if not rows[name]:
            out[name] = empty_array(name)
        else:
            out[name] = (
                np.array(rows[name], dtype=str) if dtype == "str" else np.asarray(rows[name], dtype=dtype)
            )
    return out


# --- the dataset folder -----------------------------------------------------------------------


def _build_one(race_dir: str, race_id: str, shard_path: str, config: BuildConfig) -> dict[str, Any]:
    """Worker: one race -> one shard (written atomically) -> its progress record."""
    started = time.perf_counter()
    race = read_race(race_dir)
    arrays, skipped, corrected = race_samples(race, config, race_id)
    n = write_shard(shard_path, arrays) if len(arrays["pace_ref"]) else 0
    return {
        "race": race_id,
        "source": str(Path(race_dir).resolve()),
        "config_key": config.key(),
        "file": Path(shard_path).name if n else None,
        "n": n,
        "track": race.track,
        "fuel_model": race.fuel_model.to_dict(),
        "simulated": race.truth is not None,
        "has_telemetry": race.has_telemetry,
        "skipped": dict(skipped),
        "corrected": dict(corrected),
        "seconds": round(time.perf_counter() - started, 3),
    }


def build_dataset(
    race_dirs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    segment: tuple[float, float] | None = None,
    workers: int = 1,
    strict: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or resume) a dataset from race folders (or season folders); returns the manifest.

    Rerunning with the same settings reuses every race whose shard and progress record exist.
    workers > 1 builds races in parallel processes.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    config = BuildConfig(segment=tuple(segment) if segment else None, strict=strict)  # type: ignore[arg-type]
    dirs = expand_race_dirs(race_dirs)
    if not dirs:
        raise DataError("no race folders given")
    ids = race_ids(dirs)
    out = Path(out_dir)
    (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)

    records: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, (d, rid) in enumerate(zip(dirs, ids, strict=True)):
        record = _load_record(out, i)
        shard_ok = record is not None and (record["file"] is None or (out / record["file"]).exists())
        if (
            record
            and shard_ok
            and record["race"] == rid
            and record["source"] == str(d.resolve())
            and record["config_key"] == config.key()
        ):
            records[i] = record
        else:
            todo.append(i)
    if records:
        log.info("resuming: %d of %d races already built", len(records), len(dirs))

    def shard(i: int) -> str:
        return str(out / shard_name(i))

    bar = tqdm(total=len(dirs), initial=len(records), desc="races", unit="race", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {i: pool.submit(_build_one, str(dirs[i]), ids[i], shard(i), config) for i in todo}
            for i, fut in futures.items():
                records[i] = _save_record(out, i, fut.result())
                bar.update()
    else:
        for i in todo:
            records[i] = _save_record(out, i, _build_one(str(dirs[i]), ids[i], shard(i), config))
            bar.update()
    bar.close()

    return _write_manifest(out, [records[i] for i in range(len(dirs))], config, started, len(todo))


def _record_path(out: Path, i: int) -> Path:
    return out / PROGRESS_DIR / f"{i:05d}.json"


def _load_record(out: Path, i: int) -> dict[str, Any] | None:
    path = _record_path(out, i)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is unreadable, rebuilding that race", path)
        return None


def _save_record(out: Path, i: int, record: dict[str, Any]) -> dict[str, Any]:
    tmp = _record_path(out, i).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, _record_path(out, i))
    for reason, count in record["skipped"].items():
        log.info("%s: skipped %d (%s)", record["race"], count, reason)
    return record


def _write_manifest(
    out: Path, records: list[dict[str, Any]], config: BuildConfig, started: float, built: int
) -> dict[str, Any]:
    shards = [{"file": r["file"], "n": r["n"], "race": r["race"]} for r in records if r["n"]]
    skipped: Counter[str] = Counter()
    corrected: Counter[str] = Counter()
    for r in records:
        skipped.update(r["skipped"])
        corrected.update(r["corrected"])
    races = [
        race_entry(
            r["race"],
            source=r["source"],
            track=r["track"],
            n=r["n"],
            simulated=r["simulated"],
            has_telemetry=r["has_telemetry"],
            skipped=r["skipped"],
            seconds=r["seconds"],
        )
        for r in records
    ]
    stats = shard_stats(out, shards)
    build = {
        "n_steps": N_STEPS,
        "channels": list(CHANNELS),
        "segment": list(config.segment) if config.segment else None,
        "config_key": config.key(),
        "races_built_this_run": built,
        "seconds_this_run": round(time.perf_counter() - started, 2),  # statistics included
    }
    return write_manifest(
        out,
        shards=shards,
        races=races,
        stats=stats,
        fuel_model={r["race"]: r["fuel_model"] for r in records},
        skipped=dict(skipped),
        corrected=dict(corrected),
        build=build,
    )
