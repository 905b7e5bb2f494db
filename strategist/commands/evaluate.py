"""`strategist evaluate`: score checkpoints and baselines on held-out races (report, JSON, plots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from strategist.errors import StrategistError


def _checkpoint_arg(text: str) -> tuple[str, Path]:
    """NAME=DIR or DIR (then the folder name is the display name)."""
    name, sep, folder = text.partition("=")
    path = Path(folder if sep else name)
    return (name if sep else path.name or str(path)), path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint against baselines on held-out races",
        description=(
            "Score one or more checkpoints and the baselines (persistence, stint trend, climatology, "
            "LightGBM; noise floor on simulated races) on a dataset or on race folders, which are "
            "built into a dataset on the fly. Writes report.md, results.json and PNG plots to --out."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="checkpoint folder; repeat to compare several (the first is checked against the targets)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        type=Path,
        help="one dataset folder, or race folders / folders of races",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run folder for report.md, results.json, PNGs"
    )
    parser.add_argument(
        "--train",
        type=Path,
        default=None,
        help="training dataset the baselines are fitted on (omit to skip them)",
    )
    # Options left unset take EvalRun's defaults (strategist/evaluate/runner.py).
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument(
        "--gbm-estimators", type=int, default=None, help="boosting rounds of the LightGBM baseline"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strategist.evaluate.runner import REPORT_FILE, EvalRun, run_evaluation

    checkpoints = dict(_checkpoint_arg(text) for text in args.checkpoint)
    if len(checkpoints) != len(args.checkpoint):
        raise StrategistError("two --checkpoint values share a display name; use NAME=DIR")
    options = {"title": args.title, "gbm_estimators": args.gbm_estimators, "batch_size": args.batch_size}
    payload = run_evaluation(
        EvalRun(
            checkpoints=checkpoints,
            data=list(args.data),
            out=args.out,
            train=args.train,
            **{name: value for name, value in options.items() if value is not None},
        )
    )
    print((args.out / REPORT_FILE).read_text())
    print(f"wrote {args.out} in {payload['seconds']} s")
    return 0
