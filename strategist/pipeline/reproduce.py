"""Reproduce VirtualStrategist-Base from a seed: simulate -> datasets -> train -> evaluate -> ship.

Layout of the run folder (every step is skipped when its output is already complete, so a run that
was interrupted picks up where it stopped):

    races/{train,val,test}/<race>/   simulated seasons (test: circuits never seen in training)
    data/{train,val,test}/           datasets built by race (stats from the training split)
    train/best/                      the trained model (+ split.json, model_card.md)
    eval/                            report.md, results.json, eval_*.png
    plan.json, timings.json          what was run and how long each step took
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from strategist.errors import StrategistError
from strategist.pipeline.splits import check_disjoint_races, split_circuits
from strategist.train.config import ARCH_FIELDS, TrainConfig, config_args, field_default

if TYPE_CHECKING:
    from strategist.model.config import ModelConfig

MODEL_NAME = "VirtualStrategist-Base"
# A shipped checkpoint (strategist/assets/*) holds, next to the checkpoint's own files, the split it
# was trained on and its model card.
SPLIT_FILE = "split.json"
MODEL_CARD_FILE = "model_card.md"
SHIPPED_FILES = ("model.safetensors", "config.json", "meta.json", SPLIT_FILE, MODEL_CARD_FILE)


# `strategist reproduce` flag -> ReproducePlan field, for the sizes that have a flag of their own
# (the command builds its plan with it, command() prints one with it).
PLAN_FLAGS = {
    "--era": "era",
    "--test-circuits": "n_test_circuits",
    "--train-races": "n_train_races",
    "--val-races": "n_val_races",
    "--test-races": "n_test_races",
    "--cars": "n_cars",
    "--laps": "n_laps",
    "--epochs": "epochs",
    "--train-minutes": "train_minutes",
    "--gbm-estimators": "gbm_estimators",
}


@dataclass
class ReproducePlan:
    """Sizes of one reproduce run. Defaults fit about 30-40 minutes on a 2-core CPU machine."""

    seed: int = 0
    era: str = "2023"
    n_test_circuits: int = 3  # circuits held out of pre-training, used only by the test races
    n_train_races: int = 20  # races cycling over the training circuits (~1,100 samples a race)
    n_val_races: int = 3  # other races on training circuits (held out by race)
    n_test_races: int = 3  # races on the held-out circuits
    n_cars: int = 20
    n_laps: int | None = None  # None: each circuit's own race distance
    epochs: int = 10  # ~22k samples x 10 epochs at ~150-170 samples/s (2 busy cores) = ~22 min
    train_minutes: float = 28.0  # wall-clock cap of the training step (a safety net on a busy machine)
    gbm_estimators: int = 300
    circuits: list[str] | None = None  # None: the simulator's default calendar
    # Training options beyond seed / epochs / train_minutes (the plan's own, which win).
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig | None = None  # None: the design architecture

    def train_config(self) -> TrainConfig:
        """The TrainConfig of the training step: the plan's seed, epochs and time cap on `train`."""
        return dataclasses.replace(
            self.train, seed=self.seed, epochs=self.epochs, max_minutes=self.train_minutes
        )

    def train_args(self) -> list[str]:
        """`strategist train` options of `train` and `model` that differ from the defaults."""
        from strategist.model.config import ModelConfig

        own = {name: field_default(name) for name in ("seed", "epochs", "max_minutes")}
        arch, impl = {}, None
        if self.model is not None:
            design = ModelConfig()
            arch = {
                f: getattr(self.model, f) for f in ARCH_FIELDS if getattr(self.model, f) != getattr(design, f)
            }
            impl = self.model.impl if self.model.impl != design.impl else None
        return config_args(dataclasses.replace(self.train, **own), arch, impl)

    def command(self) -> str:
        """The shell command that reruns this plan (only non-default sizes are spelled out)."""
        default = ReproducePlan()
        parts = ["strategist reproduce", f"--seed {self.seed}"]
        for flag, name in PLAN_FLAGS.items():
            value = getattr(self, name)
            if value != getattr(default, name):
                parts.append(f"{flag} {value}")
        if self.circuits:
            parts.append("--circuits " + " ".join(self.circuits))
        parts += [f"--train-arg={arg}" for arg in self.train_args()]
        return " ".join(parts)


class _Timer:
    """Wall time per step, kept in timings.json as each step ends.

    A step whose output was already complete (a resumed run) keeps the time recorded when it ran.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn, *args, done: Path | None = None, **kwargs):
        reused = done is not None and _done(done) and name in self.times
        print(f"[reproduce] {name} ...", flush=True)
        start = time.time()
        result = fn(*args, **kwargs)
        if not reused:
            self.times[name] = round(time.time() - start, 1)
            self.path.write_text(json.dumps(self.times, indent=2))
        print(
            f"[reproduce] {name} {'reused' if reused else 'done'} in {time.time() - start:.0f} s", flush=True
        )
        return result


def _done(folder: Path) -> bool:
    return (folder / ".done").is_file()


def _mark_done(folder: Path) -> None:
    (folder / ".done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def _simulate_split(
    out: Path, *, seed: int, era: str, n_races: int, circuits: tuple[str, ...], plan: ReproducePlan
):
    from strategist.sim import simulate_season

    if _done(out):
        return sorted(p for p in out.iterdir() if (p / "laps.csv").is_file())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    races = simulate_season(
        out,
        seed=seed,
        era=era,
        n_races=n_races,
        tracks=list(circuits),
        n_cars=plan.n_cars,
        n_laps=plan.n_laps,
    )
    # The race id is the folder name: prefix it with the split so that no two splits can share one.
    renamed = [
        race
        if race.name.startswith(f"{out.name}-")
        else race.rename(race.with_name(f"{out.name}-{race.name}"))
        for race in map(Path, races)
    ]
    _mark_done(out)
    return sorted(renamed)


def _build_split(race_dirs: list[Path], out: Path) -> Path:
    from strategist.data.dataset import build_dataset

    if _done(out):
        return out
    build_dataset(race_dirs, out, workers=2)  # resumes a partly built dataset
    _mark_done(out)
    return out


def train_step(train: Path, val: Path, out: Path, model: ModelConfig | None, tcfg: TrainConfig) -> None:
    """Train into out/ in-process with `tcfg` (what `strategist train` runs)."""
    from strategist.model.config import ModelConfig
    from strategist.train.loop import setup_logging
    from strategist.train.loop import train as run_training

    if not sys.stderr.isatty():  # a log file gets epoch lines, not bars
        tcfg = dataclasses.replace(tcfg, progress=False)
    setup_logging()
    run_training(train, val, out, model or ModelConfig(), tcfg)


def _train(plan: ReproducePlan, train: Path, val: Path, out: Path) -> Path:
    """Train into out/; returns the best checkpoint folder (out/best)."""
    if not _done(out):
        train_step(train, val, out, plan.model, plan.train_config())
        _mark_done(out)
    from strategist.model.checkpoint import is_checkpoint_dir

    best = out / "best"
    if not is_checkpoint_dir(best):
        raise StrategistError(f"{out}: training finished without a best checkpoint ({best})")
    return best


def _calibrate(checkpoint: Path, val: Path) -> dict | None:
    from strategist.train.calibrate import TooFewLapsError, calibrate_checkpoint

    try:
        return calibrate_checkpoint(checkpoint, val)
    except TooFewLapsError as exc:  # toy runs: say so, ship the uncalibrated corridor
        print(f"[reproduce] corridor left uncalibrated: {exc}", flush=True)
        return None


def _calibration_line(meta: dict) -> str:
    calib = meta.get("extra", {}).get("interval_calibration")
    if not calib:
        return "- P10-P90 corridor: not calibrated (too few validation laps)"
    return (
        f"- P10-P90 corridor calibrated on the validation races ({calib['n_laps']} laps; "
        f"`strategist calibrate`): P10/P90 distances to P50 scaled by {calib['scale_lower']:.3f} / "
        f"{calib['scale_upper']:.3f}, validation coverage {calib['coverage_before']:.3f} -> "
        f"{calib['coverage_after']:.3f}"
    )


def _epochs_run(train_dir: Path) -> int | None:
    """Number of epoch records in the trainer's metrics.jsonl, if it wrote one."""
    path = train_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    return sum(1 for line in path.read_text().splitlines() if '"epoch"' in line)


def write_model_card(
    path: Path,
    *,
    plan: ReproducePlan,
    split,
    sizes: dict,
    timings: dict,
    report_md: str,
    meta: dict,
    epochs_run: int | None,
) -> None:
    """model_card.md: what the model is, what it was trained and evaluated on, how to rebuild it."""
    from strategist.model.checkpoint import read_model_config

    n_params = meta.get("n_parameters")
    config = read_model_config(path.parent)
    lines = [
        f"# {MODEL_NAME}",
        "",
        "Next-lap pace corridor (P10/P50/P90 of the fuel-corrected lap time, as a delta to lap L), "
        "probability of a bad next lap (traffic loss > 1.5 s / overtaken) and tire health, from the "
        "telemetry of the last laps [L, L-1, L-2, L-5, L_base] and the gaps to the cars ahead and behind "
        "(tensor contract: strategist/contract.py).",
        "",
        "## Reproduce",
        "",
        "```",
        plan.command() + " --out runs/base",
        "```",
        "",
        "## Model",
        "",
        f"- Spatio-Temporal Interaction Transformer, d_model {config.d_model}, {config.n_layers} "
        f"layers, {config.n_heads} heads, {n_params:,} parameters"
        if n_params
        else "- Spatio-Temporal Interaction Transformer",
        f"- training: {epochs_run if epochs_run is not None else '?'} epoch(s) run of {plan.epochs} planned, "
        f"wall-clock cap {plan.train_minutes} min, CPU",
        _calibration_line(meta),
        "",
        "## Data (simulated, pre-training)",
        "",
        f"- era {plan.era}-like, {plan.n_cars} cars, seed {plan.seed}",
        f"- training circuits: {', '.join(split.train)}",
        f"- held-out test circuits (never seen in training): {', '.join(split.test)}",
        f"- races / samples: train {sizes['train_races']} / {sizes['train_samples']}, "
        f"val {sizes['val_races']} / {sizes['val_samples']} (training circuits, other races), "
        f"test {sizes['test_races']} / {sizes['test_samples']}",
        "",
        "## Time per step (wall clock, s)",
        "",
        "| step | s |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        "",
        "## Evaluation on the held-out circuits",
        "",
        report_md.split("\n", 1)[1].strip() if report_md.startswith("# ") else report_md,
        "",
        "## Limits",
        "",
        "- Trained on simulated races only; on real races see docs/evaluation.md (fine-tuning section).",
        "- The simulator's noise floor bounds what any forecaster can reach on these races.",
        "",
    ]
    path.write_text("\n".join(lines))


def ship(checkpoint: Path, dest: Path) -> Path:
    """Copy the small files of a checkpoint (weights, config, meta, split, model card) into dest."""
    missing = [name for name in SHIPPED_FILES if not (checkpoint / name).is_file()]
    if missing:
        raise StrategistError(f"{checkpoint}: cannot ship, missing {missing}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(checkpoint / name, dest / name)
    return dest


def _count_samples(dataset: Path) -> int:
    from strategist.data.dataset_format import read_manifest

    return int(read_manifest(dataset)["n_samples"])


def reproduce(plan: ReproducePlan, out: Path, *, ship_to: Path | None, images_to: Path | None = None) -> dict:
    """Run every step of the plan into `out`; returns a summary (paths, sizes, timings, targets)."""
    from strategist.evaluate.runner import CORRIDOR_PNG, RELIABILITY_PNG, REPORT_FILE, EvalRun, run_evaluation
    from strategist.evaluate.scoring import check_targets
    from strategist.model.checkpoint import read_meta
    from strategist.sim.tracks import default_calendar

    out.mkdir(parents=True, exist_ok=True)
    circuits = plan.circuits or default_calendar()
    split = split_circuits(circuits, plan.n_test_circuits, plan.seed)
    (out / "plan.json").write_text(
        json.dumps(
            {**dataclasses.asdict(plan), "command": plan.command(), "split": dataclasses.asdict(split)},
            indent=2,
        )
    )
    timer = _Timer(out / "timings.json")
    print(
        f"[reproduce] training circuits {list(split.train)}; held-out circuits {list(split.test)}", flush=True
    )

    # Three different seeds: validation and test races never replay a training race.
    races = {
        "train": timer.run(
            "simulate train", _simulate_split, out / "races" / "train", done=out / "races" / "train",
            seed=plan.seed * 1000 + 1, era=plan.era, n_races=plan.n_train_races, circuits=split.train, plan=plan,
        ),
        "val": timer.run(
            "simulate val", _simulate_split, out / "races" / "val", done=out / "races" / "val",
            seed=plan.seed * 1000 + 2, era=plan.era, n_races=plan.n_val_races, circuits=split.train, plan=plan,
        ),
        "test": timer.run(
            "simulate test", _simulate_split, out / "races" / "test", done=out / "races" / "test",
            seed=plan.seed * 1000 + 3, era=plan.era, n_races=plan.n_test_races, circuits=split.test, plan=plan,
        ),
    }  # fmt: skip
    datasets = {
        name: timer.run(f"dataset {name}", _build_split, dirs, out / "data" / name, done=out / "data" / name)
        for name, dirs in races.items()
    }
    from strategist.evaluate.datasets import races_of, read_dataset_arrays

    race_ids = {name: sorted(races_of(read_dataset_arrays(path))) for name, path in datasets.items()}
    check_disjoint_races(**race_ids)

    checkpoint = timer.run(
        "train", _train, plan, datasets["train"], datasets["val"], out / "train", done=out / "train"
    )
    # Corridor widths fitted on the validation races (training circuits, other races); the test
    # circuits stay unseen. Cheap and idempotent, so it always runs.
    timer.run("calibrate", _calibrate, checkpoint, datasets["val"])
    evaluation = timer.run(
        "evaluate",
        run_evaluation,
        EvalRun(
            checkpoints={MODEL_NAME: checkpoint},
            data=[datasets["test"]],
            out=out / "eval",
            train=datasets["train"],
            title=f"{MODEL_NAME} on held-out circuits ({', '.join(split.test)})",
            gbm_estimators=plan.gbm_estimators,
            seed=plan.seed,
        ),
    )

    meta = read_meta(checkpoint)
    # Which circuits the base has seen: fine-tuning experiments test on the others.
    (checkpoint / SPLIT_FILE).write_text(json.dumps(dataclasses.asdict(split), indent=2) + "\n")
    sizes = {f"{name}_races": len(ids) for name, ids in race_ids.items()}
    sizes |= {f"{name}_samples": _count_samples(path) for name, path in datasets.items()}
    write_model_card(
        checkpoint / MODEL_CARD_FILE,
        plan=plan,
        split=split,
        sizes=sizes,
        timings=timer.times,
        report_md=(out / "eval" / REPORT_FILE).read_text(),
        meta=meta,
        epochs_run=_epochs_run(out / "train"),
    )
    if ship_to is not None:
        ship(checkpoint, ship_to)
    if images_to is not None:
        images_to.mkdir(parents=True, exist_ok=True)
        for png in (CORRIDOR_PNG, RELIABILITY_PNG):
            shutil.copy2(out / "eval" / png, images_to / png.replace("eval_", "eval_base_"))
    summary = {
        "checkpoint": str(checkpoint),
        "shipped_to": None if ship_to is None else str(ship_to),
        "sizes": sizes,
        "timings": timer.times,
        "targets": check_targets(evaluation["results"], MODEL_NAME, "all"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[reproduce] finished: {json.dumps(summary['timings'])}", file=sys.stderr, flush=True)
    return summary
