"""`strategist reproduce`: rebuild VirtualStrategist-Base from a seed and ship it as the packaged asset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from strategist.pipeline.reproduce import ReproducePlan

    d = ReproducePlan()
    parser = subparsers.add_parser(
        "reproduce",
        help="simulate, build datasets, train, evaluate and ship VirtualStrategist-Base",
        description=(
            "Simulate pre-training seasons (some circuits held out for testing), build train/val/test "
            "datasets by race, train, evaluate against the baselines, write the model card and copy the "
            "checkpoint into strategist/assets/virtual-strategist-base. Rerunning skips finished steps."
        ),
    )
    parser.add_argument(
        "--experiment",
        choices=["base", "real", "real-finetune", "era-transfer"],
        default="base",
        help="base: pre-train and ship the base (default); real: leave-races-out cross-validation on "
        "the real races with telemetry, then train and ship the real-data model "
        "(VirtualStrategist-Real, what `strategist serve` serves) started from --base; "
        "real-finetune / era-transfer: fine-tuning experiments on top of --base (fine-tuned vs "
        "scratch vs base vs baselines)",
    )
    parser.add_argument(
        "--folds", type=int, default=None, help="real: cross-validation folds by race (default 4)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="real: folder of real race folders (default: the shared 2023 races)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="base checkpoint for the experiments (default: the shipped one)",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--out", type=Path, required=True, help="run folder (races, datasets, checkpoint, eval)"
    )
    parser.add_argument("--era", default=d.era)
    parser.add_argument(
        "--test-circuits", type=int, default=d.n_test_circuits, help="circuits held out for testing"
    )
    parser.add_argument("--train-races", type=int, default=d.n_train_races)
    parser.add_argument("--val-races", type=int, default=d.n_val_races)
    parser.add_argument("--test-races", type=int, default=d.n_test_races)
    parser.add_argument("--cars", type=int, default=d.n_cars)
    parser.add_argument(
        "--laps", type=int, default=d.n_laps, help="race length (default: each circuit's own)"
    )
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (base: {d.epochs})")
    parser.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help=f"wall-clock cap per training run (base: {d.train_minutes})",
    )
    parser.add_argument("--gbm-estimators", type=int, default=d.gbm_estimators)
    parser.add_argument(
        "--circuits", nargs="+", default=None, help="circuits to draw from (default: the calendar)"
    )
    parser.add_argument(
        "--no-ship",
        action="store_true",
        help="do not copy the checkpoint into the package assets / docs images",
    )
    parser.add_argument(
        "--train-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `strategist train`",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strategist.paths import BASE_CHECKPOINT_DIR, PROJECT_ROOT
    from strategist.pipeline.reproduce import PLAN_FLAGS, ReproducePlan, reproduce

    if args.experiment == "real":
        return _run_real_study(args, args.base or BASE_CHECKPOINT_DIR)
    if args.experiment != "base":
        return _run_experiment(args, args.base or BASE_CHECKPOINT_DIR)
    tcfg, model_cfg = _train_options(args.train_arg)

    # Sizes left unset (--epochs, --train-minutes, --laps) keep the plan's defaults.
    sizes = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in PLAN_FLAGS.items()}
    plan = ReproducePlan(
        seed=args.seed,
        circuits=args.circuits,
        train=tcfg,
        model=model_cfg,
        **{name: value for name, value in sizes.items() if value is not None},
    )
    summary = reproduce(
        plan,
        args.out,
        ship_to=None if args.no_ship else BASE_CHECKPOINT_DIR,
        images_to=None if args.no_ship else PROJECT_ROOT / "docs" / "img",
    )
    for check in summary["targets"]:
        verdict = "reached" if check["reached"] else "missed"
        print(f"{check['target']}: {check['value']:.3f} (goal {check['goal']}) {verdict}")
    if summary["shipped_to"]:
        print(f"shipped to {summary['shipped_to']}")
    return 0


def _run_real_study(args: argparse.Namespace, base: Path) -> int:
    import dataclasses

    from strategist.paths import REAL_CHECKPOINT_DIR
    from strategist.pipeline.real_study import REPORT_MD, RealStudyPlan, run_study

    plan = RealStudyPlan(base=base, seed=args.seed, gbm_estimators=args.gbm_estimators)
    if args.folds is not None:
        plan.n_folds = args.folds
    if args.data is not None:
        plan.data_dir = args.data
    changes = {
        k: v for k, v in (("epochs", args.epochs), ("max_minutes", args.train_minutes)) if v is not None
    }
    plan.train = dataclasses.replace(plan.train, **changes)
    summary = run_study(plan, args.out, ship_to=None if args.no_ship else REAL_CHECKPOINT_DIR)
    print((args.out / REPORT_MD).read_text())
    if summary.get("shipped_to"):
        print(f"shipped to {summary['shipped_to']}")
    return 0


def _train_options(train_args: list[str]):
    """TrainConfig and ModelConfig from `--train-arg` values, parsed as `strategist train` does."""
    from strategist.commands.train import add_arguments, architecture, train_config
    from strategist.errors import StrategistError
    from strategist.train.loop import model_config

    parser = argparse.ArgumentParser(prog="strategist reproduce --train-arg", add_help=False)
    add_arguments(parser, data=False)
    try:
        args = parser.parse_args(train_args)
    except SystemExit as exc:
        raise StrategistError(f"invalid --train-arg values {train_args}") from exc
    tcfg = train_config(args)
    return tcfg, model_config(tcfg, architecture(args), impl=args.impl)


def _run_experiment(args: argparse.Namespace, base: Path) -> int:
    from strategist.evaluate.runner import REPORT_FILE
    from strategist.pipeline.experiments import FinetunePlan, era_transfer, real_finetune

    plan = FinetunePlan(
        base=base,
        seed=args.seed,
        epochs=args.epochs if args.epochs is not None else FinetunePlan.epochs,
        train_minutes=args.train_minutes if args.train_minutes is not None else FinetunePlan.train_minutes,
        gbm_estimators=args.gbm_estimators,
    )
    if args.experiment == "real-finetune":
        real_finetune(plan, args.out)
    else:
        era_transfer(plan, args.out)
    print((args.out / "eval" / REPORT_FILE).read_text())
    return 0
