"""One evaluation run: models and baselines scored on the same held-out races, written to --out.

Outputs in the run folder: report.md (tables), results.json (every number, reliability bins
included), eval_corridor.png and eval_reliability.png.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from strategist.errors import StrategistError
from strategist.evaluate import plots, report
from strategist.evaluate.baselines import fit_baselines
from strategist.evaluate.datasets import check_no_race_leak, load_eval_data, races_of, read_dataset_arrays
from strategist.evaluate.model_forecast import model_predictions
from strategist.evaluate.predictions import Predictions
from strategist.evaluate.scoring import (
    NOISE_FLOOR,
    ORACLE,
    oracle_predictions,
    score_forecaster,
    score_noise_floor,
)

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
CORRIDOR_PNG = "eval_corridor.png"
RELIABILITY_PNG = "eval_reliability.png"


@dataclass
class EvalRun:
    checkpoints: dict[str, Path]  # display name -> checkpoint folder; the first is "the model"
    data: list[Path]  # one dataset folder, or race folders
    out: Path
    train: Path | None = None  # training dataset: baselines are fitted on it; None skips them
    title: str = "Evaluation"
    gbm_estimators: int = 300
    batch_size: int = 512
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def run_evaluation(run: EvalRun) -> dict:
    """Score every checkpoint and baseline; write the report, JSON and plots; return the results."""
    if not run.checkpoints:
        raise StrategistError("evaluation needs at least one checkpoint")
    from strategist.model.checkpoint import load_checkpoint

    run.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="strategist-eval-") as tmp:
        data, source = load_eval_data(run.data, Path(tmp))

    forecasts: dict[str, Predictions] = {}
    for name, folder in run.checkpoints.items():
        model, _cfg, _meta = load_checkpoint(folder)
        forecasts[name] = model_predictions(model, data, run.batch_size)

    context = [
        f"evaluation set: {source}; {len(data['pace_ref'])} samples from {len(races_of(data))} race(s)"
    ]
    if run.train is not None:
        train = read_dataset_arrays(run.train)
        check_no_race_leak(train, data)
        for baseline in fit_baselines(train, gbm_estimators=run.gbm_estimators, seed=run.seed):
            forecasts[baseline.name] = baseline.predict(data)
        context.append(
            f"baselines fitted on {run.train} ({len(train['pace_ref'])} samples, {len(races_of(train))} races, "
            "none of them in the evaluation set)"
        )
    else:
        context.append("no training dataset given: fitted baselines (persistence, stint trend, gbm) left out")

    oracle = oracle_predictions(data)
    if oracle is not None:
        forecasts[ORACLE] = oracle
    results = {name: score_forecaster(pred, data) for name, pred in forecasts.items()}
    floor = score_noise_floor(data)
    if floor is not None:
        results[NOISE_FLOOR] = floor
    context += [f"checkpoint {name}: {folder}" for name, folder in run.checkpoints.items()]
    context += run.notes

    model_name = next(iter(run.checkpoints))
    (run.out / REPORT_FILE).write_text(
        report.markdown_report(
            results, model_name=model_name, title=run.title, context=context, simulated=floor is not None
        )
        + "\n"
    )
    plots.plot_corridor(run.out / CORRIDOR_PNG, data, forecasts, model_name)
    plots.plot_reliability(
        run.out / RELIABILITY_PNG,
        {name: r["risk"]["reliability"] for name, r in results.items() if "risk" in r},
    )
    payload = {
        "title": run.title,
        "context": context,
        "model": model_name,
        "checkpoints": {k: str(v) for k, v in run.checkpoints.items()},
        "train": None if run.train is None else str(run.train),
        "simulated": floor is not None,
        "seconds": round(time.time() - started, 1),
        "results": results,
    }
    report.write_json(run.out / RESULTS_FILE, payload)
    return payload
