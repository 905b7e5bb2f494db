"""The example request shipped in examples/predict_request.json, made from a simulated race.

A simulated race (not real F1 timing, which the project must not redistribute) is written to a
temporary folder, read back with the Data Engine's reader and one car's stack after lap `lap` is
taken: the car closest behind another one in a racing situation, so the example shows traffic.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from strategist.data.fastf1_reader import read_race
from strategist.errors import StrategistError
from strategist.serving.race_requests import drivers_with_stack, request_from_race
from strategist.sim.simulate import simulate_race

log = logging.getLogger(__name__)

EXAMPLE_SEED = 2023
EXAMPLE_LAP = 20


def example_request(*, seed: int = EXAMPLE_SEED, lap: int = EXAMPLE_LAP) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="strategist-example-") as tmp:
        folder = simulate_race(Path(tmp), seed=seed)
        race = read_race(folder)
        candidates = []
        for driver in drivers_with_stack(race, lap):
            ahead, _ = race.neighbours(driver, lap)
            # A racing situation (close, similar pace), not a car passing a pitting or lapped one.
            if ahead is not None and 0.3 <= ahead[0] <= 3.0 and abs(ahead[1]) <= 3.0:
                candidates.append((ahead[0], driver))
        if not candidates:
            raise StrategistError(
                f"simulated race {folder.name} (seed {seed}) has no car behind another at lap {lap}"
            )
        _, driver = min(candidates)
        payload = request_from_race(race, driver, lap, decimals=3)
        payload["car"] = f"{driver} ({race.race_id}, simulated, seed {seed})"
        return payload


def write_example_request(path: Path, *, seed: int = EXAMPLE_SEED, lap: int = EXAMPLE_LAP) -> Path:
    payload = example_request(seed=seed, lap=lap)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    log.info("example request written to %s (%s, lap %d)", path, payload["car"], lap)
    return path
