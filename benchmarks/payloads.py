"""Realistic /predict bodies for the load tests: raw telemetry stacks of a race, read by the Data Engine.

The race comes from the simulator (`strategist.sim.simulate_race`, one short race) when it is
importable; otherwise from a real FastF1 export in the shared data folder. Either way the bodies are
built by `strategist.serving.race_requests.request_from_race` (the reader's raw car_data samples, indexed by
time, the Data Engine's slot rules, the reader's neighbours and fuel model, each lap's timing), so
they are exactly what a pit-wall client would send. Which source was used is returned with the payloads and written into
every result file.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from server.preprocess import preprocess
from server.schemas import PredictRequest
from strategist.data.fastf1_reader import Race, read_race
from strategist.errors import DataError
from strategist.paths import f1_2023_dir
from strategist.serving.race_requests import drivers_with_stack, request_from_race

log = logging.getLogger(__name__)

DEFAULT_RACE_LAPS = 57  # the gateway's default; only used when a body carries neither fuel nor race_laps


@dataclass
class PayloadSet:
    bodies: list[dict[str, Any]]
    source: str  # "simulated: <folder>" or "real FastF1 export: <folder>"

    def encoded(self) -> list[bytes]:
        return [json.dumps(body, separators=(",", ":")).encode() for body in self.bodies]

    def mean_body_kib(self) -> float:
        return float(np.mean([len(b) for b in self.encoded()]) / 1024)


def _simulated_race(work_dir: Path, seed: int) -> tuple[Race | None, str]:
    """One short simulated race (and ""), or (None, why not) when the simulator cannot run here."""
    try:
        from strategist.sim import simulate_race

        # Simulated once per seed and kept (simulating takes tens of seconds on 2 cores).
        # 24 laps: short enough to simulate quickly, long enough that the simulator's fuel load
        # burns under the gateway's 5 kg/lap ceiling.
        cache = work_dir / f"sim-race-seed{seed}"
        done = cache / ".done"
        if not done.exists():
            shutil.rmtree(cache, ignore_errors=True)
            simulate_race(cache, seed=seed, n_cars=8, n_laps=24, folder_name="race")
            done.write_text("ok")
        return read_race(cache / "race"), ""
    except Exception as exc:  # noqa: BLE001 - any simulator failure falls back to a real race
        log.warning("simulator unavailable (%s: %s): using a real FastF1 export", type(exc).__name__, exc)
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _real_race() -> Race:
    root = f1_2023_dir()
    folders = sorted(p for p in root.iterdir() if (p / "laps.csv").is_file()) if root.is_dir() else []
    if not folders:
        raise DataError("no simulator and no real race folder to build payloads from", file=str(root))
    return read_race(folders[0])


def race_payloads(n: int, work_dir: Path, seed: int = 0) -> PayloadSet:
    """`n` distinct bodies (different drivers and laps) from one race; validated by the gateway's schema."""
    work_dir.mkdir(parents=True, exist_ok=True)
    race, why_not = _simulated_race(work_dir, seed)
    source = f"simulated race (strategist.sim.simulate_race): {race.source}" if race is not None else ""
    if race is None:
        race = _real_race()
        source = f"real FastF1 export {race.source} (simulator unavailable: {why_not})"
    rng = np.random.default_rng(seed)
    bodies: list[dict[str, Any]] = []
    # Laps from 7 on have a full [L, L-1, L-2, L-5, L_base] stack; stop before the flag.
    candidate_laps = list(range(7, max(8, race.total_laps - 1)))
    attempts = 0
    while len(bodies) < n and attempts < 20 * n:
        attempts += 1
        lap = int(rng.choice(candidate_laps))
        drivers = drivers_with_stack(race, lap)
        if not drivers:
            continue
        driver = str(rng.choice(drivers))
        try:
            body = request_from_race(race, driver, lap)
            PredictRequest.model_validate(body)  # the gateway would 422 it otherwise: skip such laps
        except (DataError, ValueError) as exc:
            log.debug("skipping %s lap %d: %s", driver, lap, exc)
            continue
        bodies.append(body)
    if len(bodies) < n:
        raise DataError(f"only {len(bodies)} of {n} usable stacks in the race", file=race.source)
    return PayloadSet(bodies=bodies, source=source)


def model_tensors(body: dict[str, Any], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The rows the gateway sends Triton for one body, by input name (input_names: the served model's,
    e.g. export.triton_config.checkpoint_input_names): telemetry [2,5,100,5], tactical [2,2,2] and,
    for a context model, context [2,N_CONTEXT]; row 0 as raced, row 1 the clean-air counterfactual
    (same preprocessing code as the gateway)."""
    batch = preprocess(
        [PredictRequest.model_validate(body)], default_race_laps=DEFAULT_RACE_LAPS, input_names=input_names
    )
    return batch.model_inputs(input_names)
