"""`strategist simulate`: simulate a season of races into FastF1-layout race folders."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate races (telemetry, timing, ground truth) for pre-training"
    )
    p.add_argument("--out", required=True, help="output folder, one sub-folder per race (e.g. runs/sim/2023)")
    p.add_argument("--races", type=int, default=20, help="number of races (rounds) to simulate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--era", default="2023", help="rules era: 2019 or 2023")
    p.add_argument("--tracks", nargs="*", default=None, help="circuits to cycle through (default: F1 venues)")
    p.add_argument("--cars", type=int, default=20)
    p.add_argument("--laps", type=int, default=None, help="race distance in laps (default: the real one)")
    p.add_argument("--list-tracks", action="store_true", help="print the available circuits and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from strategist.sim import available_tracks, simulate_season

    if args.list_tracks:
        print("\n".join(available_tracks()))
        return 0
    t0 = time.perf_counter()
    folders = simulate_season(
        Path(args.out),
        seed=args.seed,
        era=args.era,
        n_races=args.races,
        tracks=args.tracks or None,
        n_cars=args.cars,
        n_laps=args.laps,
    )
    print(f"simulated {len(folders)} races into {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
