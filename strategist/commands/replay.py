"""`strategist replay`: feed a recorded race into a race session on a gateway, lap by lap."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a race folder (real or simulated) into a live race session, in the order laps finished",
        description="Opens a race session on the gateway for the race (track, laps, fuel model) and posts "
        "every car's completed laps (timing row + raw car data) in the order they crossed the line, paced "
        "by the race's own clock divided by --speed. Laps the session already holds are skipped, so a "
        "replay stopped by a gateway restart can simply be run again; while the gateway is down it "
        "retries for --retry-s seconds. Watch it at <url>/live/<session>.",
    )
    parser.add_argument("--race", type=Path, required=True, help="race folder (FastF1 export layout)")
    parser.add_argument(
        "--speed", type=float, default=20.0, help="race seconds per wall second (0 = no waiting)"
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="gateway URL")
    parser.add_argument("--laps", type=int, default=None, help="replay race laps 1..N only (default: all)")
    parser.add_argument("--session", default=None, help="session id (default: the race folder's name)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STRATEGIST_API_KEY"),
        help="bearer token (default $STRATEGIST_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout of one call, s")
    parser.add_argument(
        "--retry-s", type=float, default=60.0, help="keep retrying an unreachable gateway this long, s"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strategist.serving.replay import ReplayOptions, replay

    if args.speed < 0:
        raise SystemExit("error: --speed must be >= 0")
    if args.laps is not None and args.laps < 1:
        raise SystemExit("error: --laps must be >= 1")
    options = ReplayOptions(
        race=args.race,
        url=args.url.rstrip("/"),
        speed=args.speed,
        max_lap=args.laps,
        session_id=args.session,
        api_key=args.api_key,
        timeout_s=args.timeout,
        retry_s=args.retry_s,
        progress=not args.no_progress,
    )
    summary = replay(options)
    print(summary.text())
    return 0 if summary.rejected == 0 else 1
