"""`strategist client`: send real lap stacks from a race folder to a running gateway, print the answers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "client",
        help="ask a running gateway about cars of a race folder (real or simulated) and print the answers",
        description="Builds each car's 5-lap stack from the race's raw telemetry (Data Engine reader and "
        "slot rules), POSTs it to the gateway (/predict for one driver, /predict/batch for the field) and "
        "prints a table with the measured next lap alongside.",
    )
    parser.add_argument("--race", type=Path, required=True, help="race folder (FastF1 export layout)")
    parser.add_argument("--driver", help="driver abbreviation, e.g. VER (default: every car with telemetry)")
    parser.add_argument(
        "--lap", type=int, default=None, help="lap L just completed (default 20, or mid-race)"
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="gateway URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STRATEGIST_API_KEY"),
        help="bearer token (default $STRATEGIST_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout, s")
    parser.set_defaults(func=run)


def _measured_next_lap(race: Any, driver: str, lap: int) -> float | None:
    from strategist.errors import DataError
    from strategist.serving.race_requests import lap_time_s

    try:
        return lap_time_s(race, driver, lap + 1)
    except DataError:
        return None


def run(args: argparse.Namespace) -> int:
    import logging

    import httpx
    from rich.console import Console
    from rich.table import Table

    from strategist.data.fastf1_reader import read_race
    from strategist.errors import DataError, StrategistError
    from strategist.serving.race_requests import drivers_with_stack, request_from_race

    log = logging.getLogger("strategist.client")
    console = Console(width=120) if not Console().is_terminal else Console()
    race = read_race(args.race)
    lap = args.lap if args.lap is not None else min(20, max(1, race.total_laps // 2))
    drivers = [args.driver] if args.driver else drivers_with_stack(race, lap)
    if not drivers:
        raise StrategistError(f"{args.race}: no car with telemetry completed lap {lap}")

    payloads, skipped = [], []
    for driver in drivers:
        try:
            payloads.append(request_from_race(race, driver, lap))
        except DataError as exc:
            if args.driver:
                raise
            skipped.append(driver)
            log.warning("skipped %s: %s", driver, exc)
    if not payloads:
        raise StrategistError(
            f"{args.race}: no stack could be built for lap {lap} ({len(skipped)} cars skipped)"
        )

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    single = len(payloads) == 1
    endpoint = "/predict" if single else "/predict/batch"
    body = payloads[0] if single else {"cars": payloads}
    try:
        response = httpx.post(
            args.url.rstrip("/") + endpoint, json=body, headers=headers, timeout=args.timeout
        )
    except httpx.HTTPError as exc:
        raise StrategistError(f"could not reach the gateway at {args.url}: {exc}") from exc
    if response.status_code != 200:
        raise StrategistError(
            f"gateway answered {response.status_code} on {endpoint}: {response.text[:2000]}"
        )
    answer = response.json()
    predictions = [answer] if single else answer["predictions"]

    model = answer["model"]
    table = Table(
        title=f"{race.race_id}: lap {lap} -> {lap + 1}  ({model['name']} v{model['version']} via {model['backend']})",
        caption="P10/P50/P90: fuel-corrected next lap, s. Exp.: expected lap time with lap L+1's fuel. "
        "Measured: the race's lap L+1. Traffic: P50 minus clean-air P50, s.",
    )
    columns = (
        "Car",
        "P10",
        "P50",
        "P90",
        "Exp. P50",
        "Measured",
        "Clean P50",
        "Traffic",
        "P(traf)",
        "P(ovt)",
        "Tire",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "Car" else "right", no_wrap=True)
    for prediction in predictions:
        pace = prediction["pace"]["fuel_corrected"]
        measured = _measured_next_lap(race, prediction["car"], lap)
        table.add_row(
            prediction["car"],
            f"{pace['p10_s']:.2f}",
            f"{pace['p50_s']:.2f}",
            f"{pace['p90_s']:.2f}",
            f"{prediction['pace']['expected_lap_time']['p50_s']:.2f}",
            "-" if measured is None else f"{measured:.2f}",
            f"{prediction['clean_air']['pace']['fuel_corrected']['p50_s']:.2f}",
            f"{prediction['traffic_cost_s']:+.2f}",
            f"{prediction['risk']['traffic_loss']:.2f}",
            f"{prediction['risk']['overtaken']:.2f}",
            f"{prediction['tire_health']:.2f}",
        )
    console.print(table)
    timing = answer["timing"]
    console.print(
        f"request {answer['request_id']}: {len(predictions)} car(s), gateway preprocess "
        f"{timing['preprocess_ms']:.1f} ms, predict {timing['predict_ms']:.1f} ms, postprocess "
        f"{timing['postprocess_ms']:.1f} ms"
        + (f"; {len(skipped)} car(s) skipped: {', '.join(skipped)}" if skipped else "")
    )
    return 0
