"""Race simulator: FastF1-layout races (telemetry, timing, ground truth) for pre-training.

Public API:
    simulate_race(out_dir, *, track=None, seed=0, era="2023", n_cars=20, n_laps=None) -> Path
    simulate_season(out_dir, *, seed=0, era="2023", n_races=20, tracks=None, n_cars=20, n_laps=None) -> list[Path]
    available_tracks() -> list[str]
"""

from strategist.sim.simulate import simulate_race, simulate_season
from strategist.sim.tracks import available_tracks

__all__ = ["available_tracks", "simulate_race", "simulate_season"]
