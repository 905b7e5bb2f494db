"""`strategist calibrate`: fit a checkpoint's P10-P90 corridor on held-out races."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the P10/P90 corridor widths of a checkpoint on held-out (validation) races",
        description=(
            "Runs the checkpoint over a held-out dataset and scales the distance of P10 and P90 from "
            "P50 so that 10 %% of laps fall below P10 and 10 %% above P90; the scales are written into "
            "the checkpoint (and travel into exported graphs). Use validation races, never test races."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (rewritten)")
    parser.add_argument("--data", type=Path, required=True, help="held-out dataset folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strategist.train.calibrate import calibrate_checkpoint

    report = calibrate_checkpoint(args.checkpoint, args.data)
    print(json.dumps(report, indent=2))
    return 0
