"""Fine-tuning experiments on top of VirtualStrategist-Base, each one command.

real-finetune: six of the 13 real 2023 races with telemetry, held out by race (train 3, val 1, test 2).
era-transfer:  a new simulated era ("2019"-like) with about 10 % of a season to fine-tune on.

Both compare, in one evaluation table on the same test races: the base fine-tuned
(--init-from base --freeze-stem --lr 1e-5), the same architecture trained from scratch on the same
data, the base without fine-tuning, and the baselines fitted on the fine-tuning training set.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strategist.errors import StrategistError
from strategist.pipeline.reproduce import MODEL_CARD_FILE, SPLIT_FILE
from strategist.train.config import ARCH_FIELDS, TrainConfig

REAL_TRAIN = ("01_sakhir", "04_baku", "07_barcelona")
REAL_VAL = ("10_silverstone",)
REAL_TEST = ("11_budapest", "16_suzuka")


@dataclass
class FinetunePlan:
    base: Path  # checkpoint folder to fine-tune
    seed: int = 0
    epochs: int = 10
    train_minutes: float = 6.0  # wall-clock cap per training arm (two arms per experiment)
    finetune_lr: float = 1e-5
    gbm_estimators: int = 300
    # Training options both arms share; seed, epochs and train_minutes above win.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(progress=False))

    def arm_config(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(
            self.train, seed=self.seed, epochs=self.epochs, max_minutes=self.train_minutes, **changes
        )


def _build(race_dirs: list[Path], out: Path) -> Path:
    from strategist.data.dataset import build_dataset

    build_dataset(race_dirs, out, workers=2, progress=False)
    return out


def _train_arm(out: Path, train: Path, val: Path, tcfg: TrainConfig, arch: dict | None = None) -> Path:
    from strategist.model.checkpoint import is_checkpoint_dir
    from strategist.pipeline.reproduce import train_step
    from strategist.train.loop import model_config

    if not is_checkpoint_dir(out / "best"):
        train_step(train, val, out, model_config(tcfg, arch), tcfg)
    return out / "best"


def _architecture(base: Path) -> dict:
    """The base's architecture (the scratch arm must match it)."""
    from strategist.model.checkpoint import read_model_config

    cfg = read_model_config(base)
    return {name: getattr(cfg, name) for name in ARCH_FIELDS}


def compare_arms(
    plan: FinetunePlan, datasets: dict[str, Path], out: Path, *, title: str, notes: list[str]
) -> dict:
    """Train the fine-tuned and the from-scratch arm, then evaluate both with the base and baselines."""
    from strategist.evaluate.runner import EvalRun, run_evaluation

    finetuned = _train_arm(
        out / "finetuned",
        datasets["train"],
        datasets["val"],
        plan.arm_config(init_from=str(plan.base), freeze_stem=True, lr=plan.finetune_lr),
    )
    scratch = _train_arm(
        out / "scratch", datasets["train"], datasets["val"], plan.arm_config(), _architecture(plan.base)
    )
    return run_evaluation(
        EvalRun(
            checkpoints={"base + fine-tune": finetuned, "scratch": scratch, "base, no fine-tune": plan.base},
            data=[datasets["test"]],
            out=out / "eval",
            train=datasets["train"],
            title=title,
            gbm_estimators=plan.gbm_estimators,
            seed=plan.seed,
            notes=notes,
        )
    )


def real_finetune(plan: FinetunePlan, out: Path) -> dict:
    from strategist.paths import f1_2023_dir

    root = f1_2023_dir()
    names = {"train": REAL_TRAIN, "val": REAL_VAL, "test": REAL_TEST}
    missing = [n for group in names.values() for n in group if not (root / n / "telemetry").is_dir()]
    if missing:
        raise StrategistError(f"real races with telemetry not found under {root}: {missing}")
    datasets = {
        split: _build([root / n for n in races], out / "data" / split) for split, races in names.items()
    }
    notes = [
        f"fine-tuning races: train {', '.join(REAL_TRAIN)}; val {', '.join(REAL_VAL)}; test {', '.join(REAL_TEST)}",
        f"arms: {plan.epochs} epochs max, {plan.train_minutes} min cap each; fine-tune lr {plan.finetune_lr}, stem frozen",
    ]
    return compare_arms(
        plan, datasets, out, title="Real 2023 races: fine-tuned vs scratch vs base", notes=notes
    )


def era_transfer(
    plan: FinetunePlan,
    out: Path,
    *,
    era: str = "2019",
    n_train_races: int = 2,
    n_test_races: int = 2,
    n_cars: int = 20,
    n_laps: int | None = None,
) -> dict:
    """Fine-tune on ~10 % of a season of a new era; test on the base's held-out circuits in that era."""
    from strategist.sim import simulate_season

    base_plan_path = plan.base / MODEL_CARD_FILE
    split_path = out / SPLIT_FILE
    circuits = _base_split(plan.base)
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps(circuits, indent=2))
    datasets = {}
    sizes = {
        "train": (n_train_races, circuits["train"]),
        "val": (1, circuits["train"]),
        "test": (n_test_races, circuits["test"]),
    }
    for k, (split, (n_races, tracks)) in enumerate(sizes.items()):
        race_dir = out / "races" / split
        if not (race_dir / ".done").is_file():
            if race_dir.exists():
                shutil.rmtree(race_dir)
            race_dir.mkdir(parents=True)
            races = simulate_season(
                race_dir,
                seed=plan.seed * 1000 + 100 + k,
                era=era,
                n_races=n_races,
                tracks=list(tracks),
                n_cars=n_cars,
                n_laps=n_laps,
            )
            for race in map(Path, races):
                race.rename(race.with_name(f"{era}-{split}-{race.name}"))
            (race_dir / ".done").write_text("done")
        datasets[split] = _build([race_dir], out / "data" / split)
    notes = [
        f"era {era}: fine-tune on {n_train_races} race(s) of training circuits {', '.join(circuits['train'])} "
        f"(about 10 % of a season), validate on 1, test on {n_test_races} race(s) of the base's held-out "
        f"circuits {', '.join(circuits['test'])}",
        f"base card: {base_plan_path}",
    ]
    return compare_arms(
        plan, datasets, out, title=f"Era transfer ({era}-like): fine-tuned vs scratch vs base", notes=notes
    )


def _base_split(base: Path) -> dict[str, list[str]]:
    """The base's training / held-out circuits (split.json, written and shipped by `strategist reproduce`)."""
    split_file = base / SPLIT_FILE
    if not split_file.is_file():
        raise StrategistError(f"{base}: {SPLIT_FILE} missing (written by `strategist reproduce`)")
    return json.loads(split_file.read_text())
