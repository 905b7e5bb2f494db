"""Race parameters: drawn from the 121 fitted TUM races (`<data_root>/tum-race-params/pars_*.ini`), with
documented built-in priors (domain-notes.md section 6) when those files are absent.

The .ini files hold one JSON-like dict per key (`track_pars = {...}` spanning several lines, with
`true`/`null`); they are parsed here without executing anything.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from strategist.errors import DataError
from strategist.paths import race_params_dir

log = logging.getLogger(__name__)

_KEY_LINE = re.compile(r"^([a-z_0-9]+)\s*=\s*(.*)$")


def parse_tum_ini(path: Path) -> dict[str, dict]:
    """Parse a TUM parameter file into {key: value} ("race_pars", "track_pars", ...)."""
    out: dict[str, dict] = {}
    key: str | None = None
    chunks: list[str] = []

    def flush() -> None:
        if key is None:
            return
        text = "\n".join(chunks)
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"cannot parse value of {key!r}: {exc}", file=str(path), field=key) from exc

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#") or line.startswith("["):
            flush()
            key, chunks = None, []
            continue
        match = _KEY_LINE.match(line)
        if match and not line.startswith(" "):
            flush()
            key, chunks = match.group(1), [match.group(2)]
        elif key is not None:
            chunks.append(line)
    flush()
    return out


@dataclass(frozen=True)
class TumRace:
    """The numbers the simulator takes from one fitted race."""

    track: str
    season: int
    n_laps: int
    fuel_sens_s_per_kg: float
    pit_inlap_s: float
    pit_outlap_s: float
    pit_inlap_sc_s: float
    pit_outlap_sc_s: float
    loss_firstlap_s: float
    loss_per_gridpos_s: float
    gap_overtake_s: float
    drs_effect_s: float
    car_deficits_s: tuple[float, ...]
    driver_deficits_s: tuple[float, ...]
    deg_k1_median: float  # median fitted linear degradation of the race, s/lap
    location_cat: int


@dataclass(frozen=True)
class TumLibrary:
    races: tuple[TumRace, ...]
    lap_sigma_s: tuple[float, ...]  # driver lap-time noise s.d. (pars_mcs.ini t_lap_var_sigma)
    pit_fisk: tuple[tuple[float, float, float], ...]  # team standstill add-on (c, loc, scale)
    sc_count_p: tuple[float, ...]
    sc_start_p: tuple[float, ...]
    sc_duration_p: tuple[float, ...]
    vsc_duration_p: tuple[float, ...]
    source: str

    def races_at(self, track: str) -> list[TumRace]:
        return [r for r in self.races if r.track == track]


# Built-in priors (domain-notes.md sections 1.3, 1.5 and 6) for a machine without the parameter files.
BUILTIN = TumLibrary(
    races=(
        TumRace(
            track="",
            season=2019,
            n_laps=57,
            fuel_sens_s_per_kg=0.031,
            pit_inlap_s=3.0,
            pit_outlap_s=16.0,
            pit_inlap_sc_s=0.0,
            pit_outlap_sc_s=8.0,
            loss_firstlap_s=3.8,
            loss_per_gridpos_s=0.139,
            gap_overtake_s=2.03,
            drs_effect_s=-0.5,
            car_deficits_s=(0.0, 0.3, 0.6, 0.9, 1.1, 1.4, 1.6, 1.8, 2.1, 2.5),
            driver_deficits_s=tuple(np.linspace(0.0, 0.7, 20).round(3)),
            deg_k1_median=0.04,
            location_cat=2,
        ),
    ),
    lap_sigma_s=(0.46, 0.48, 0.5, 0.52, 0.55, 0.57, 0.6, 0.61, 0.63, 0.65, 0.68, 0.72, 0.76, 0.82),
    pit_fisk=((1.563, -0.046, 0.48), (2.012, -0.091, 0.577), (2.414, -0.153, 0.737), (3.498, -0.249, 1.188)),
    sc_count_p=(0.455, 0.413, 0.099, 0.033),
    sc_start_p=(0.364, 0.136, 0.136, 0.08, 0.193, 0.091),
    sc_duration_p=(0.0, 0.182, 0.25, 0.227, 0.193, 0.057, 0.068, 0.023, 0.0, 0.0),
    vsc_duration_p=(0.479, 0.396, 0.021, 0.104),
    source="built-in priors (domain-notes.md section 6)",
)


def _race_from_file(path: Path) -> TumRace:
    pars = parse_tum_ini(path)
    try:
        race, track, cars = pars["race_pars"], pars["track_pars"], pars["car_pars"]
        drivers, tires, vse = pars["driver_pars"], pars["tireset_pars"], pars.get("vse_pars", {})
        k1 = [
            comp["k_1_lin"]
            for per_driver in tires.values()
            for name, comp in per_driver.items()
            if isinstance(comp, dict) and name.startswith("A") and "k_1_lin" in comp
        ]
        return TumRace(
            track=str(track["name"]),
            season=int(race["season"]),
            n_laps=int(race["tot_no_laps"]),
            fuel_sens_s_per_kg=float(track["t_lap_sens_mass"]),
            pit_inlap_s=float(track["t_pitdrive_inlap"]),
            pit_outlap_s=float(track["t_pitdrive_outlap"]),
            pit_inlap_sc_s=float(track.get("t_pitdrive_inlap_sc") or 0.0),
            pit_outlap_sc_s=float(track.get("t_pitdrive_outlap_sc") or track["t_pitdrive_outlap"] * 0.5),
            loss_firstlap_s=float(track["t_loss_firstlap"]),
            loss_per_gridpos_s=float(track["t_loss_pergridpos"]),
            gap_overtake_s=float(track.get("t_gap_overtake") or 2.03),
            drs_effect_s=float(track.get("t_drseffect") or -0.5),
            car_deficits_s=tuple(sorted(float(c["t_car"]) for c in cars.values())),
            driver_deficits_s=tuple(sorted(float(d["t_driver"]) for d in drivers.values())),
            deg_k1_median=float(np.median(k1)) if k1 else 0.04,
            location_cat=int(vse.get("location_cat", 2) or 2),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"missing or bad field: {exc}", file=str(path)) from exc


@lru_cache(maxsize=4)
def load_library(folder: Path | None = None) -> TumLibrary:
    """All fitted races under `folder` (default <data_root>/tum-race-params), or BUILTIN when absent."""
    folder = folder or race_params_dir()
    files = sorted(folder.glob("pars_*_*.ini")) if folder.exists() else []
    files = [f for f in files if f.name != "pars_mcs.ini"]
    if not files:
        log.info("no TUM parameter files under %s; using %s", folder, BUILTIN.source)
        return BUILTIN
    races = tuple(_race_from_file(f) for f in files)
    mcs_path = folder / "pars_mcs.ini"
    if not mcs_path.exists():
        return TumLibrary(**{**BUILTIN.__dict__, "races": races, "source": f"{len(races)} files in {folder}"})
    mcs = parse_tum_ini(mcs_path)
    fcy = mcs["p_fcy_phases"]
    return TumLibrary(
        races=races,
        lap_sigma_s=tuple(float(v) for k, v in sorted(mcs["t_lap_var_sigma"].items()) if k != "unknown"),
        pit_fisk=tuple(tuple(float(x) for x in v) for _, v in sorted(mcs["t_pit_var_fisk_pars"].items())),  # type: ignore[misc]
        sc_count_p=tuple(fcy["p_sc_quant"]),
        sc_start_p=tuple(fcy["p_sc_start"]),
        sc_duration_p=tuple(fcy["p_sc_duration"]),
        vsc_duration_p=tuple(fcy["p_vsc_duration"]),
        source=f"{len(races)} fitted races + pars_mcs.ini in {folder}",
    )


def fisk_sample(rng: np.random.Generator, c: float, loc: float, scale: float) -> float:
    """Log-logistic (Fisk) standstill add-on, truncated at 3x its mean like TUM's race simulation."""
    u = rng.uniform(1e-6, 1 - 1e-6)
    value = loc + scale * (u / (1.0 - u)) ** (1.0 / c)
    mean = loc + scale * (np.pi / c) / np.sin(np.pi / c) if c > 1 else 3.0
    return float(np.clip(value, 0.0, 3.0 * mean))
