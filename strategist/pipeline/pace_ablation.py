"""Ablation of the racing-lap pace head on the real races, fast enough to try many choices.

    python -m strategist.pipeline.pace_ablation --data runs/real/dataset --out runs/ablation \
        --results docs/results

The full model takes minutes per fold; this study replaces it by the part that decides racing-lap
accuracy, a small pace network on the model's own inputs, trained with the same pinball loss, the
same folds by race (strategist.pipeline.real_study.fold_plan) and the same rows (forecastable
targets), and scores each variant against persistence and the timing-only GBM on the pooled
out-of-fold predictions. Variants switch one thing at a time against the shipped design (split
heads, robust scale + asinh, a residual on persistence, the timing context, every training race):

- split: two heads chosen by lap L's flags (pit / neutralised L) vs one head for every lap;
- scaling of the context: robust scale + clip at +-10 vs robust scale + asinh;
- telemetry tokens: the frozen pre-trained base's pooled tokens (2 x 256) appended, or a learnt
  16-dim projection of them, vs none;
- lap-time ratios from the telemetry (mean 1/Speed per slot vs lap L) appended;
- target: the next lap's fuel-corrected time itself (lap L's time an input) vs its change from lap L;
- inputs: no timing context, only what the two-input design saw (tactical tensor, the base's
  telemetry tokens and lap-time ratios), vs the timing context;
- training races: 3 of each fold's training races (the older real fine-tune) vs all of them;
- training length (2 x epochs) and width (256 hidden units) of the network.

A further row calibrates the shipped variant's P10-P90 corridor per calibration group (clean /
traffic / special, told from the inputs as the model does): for the test races of each fold, the
scales are fitted on the out-of-fold predictions of the other folds' races, never on its own rows.

The telemetry features need a base checkpoint (default: the shipped VirtualStrategist-Base).
`--results DIR` also writes DIR/pace_ablation.json / .md with the command, the machine and the
wall time, the form in which the results are committed (docs/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strategist import contract
from strategist.data.dataset_format import load_arrays, robust_centre_scale
from strategist.machine import describe_machine
from strategist.paths import BASE_CHECKPOINT_DIR
from strategist.pipeline.real_study import fold_plan, racing

QUANTILES = np.asarray(contract.QUANTILES)
PERSISTENCE = "persistence"
TIMING_GBM = "timing gbm"
RESULTS_NAME = "pace_ablation"  # <results>/pace_ablation.json / .md
_SPECIAL = [
    contract.CONTEXT_FEATURES.index(f"L.{n}")
    for n in ("pit_in", "pit_out", "status_sc", "status_vsc", "status_red")
]


@dataclass(frozen=True)
class Variant:
    """One pace network; each field away from its default is one change against the shipped design."""

    name: str
    split: bool = True
    scaling: str = "asinh"  # "asinh" | "clip"
    tokens: str = "none"  # "none" | "all" | "projected"
    ratios: bool = False
    context: bool = True  # the timing context among the inputs
    residual: bool = True  # predict the change from lap L (False: the next lap's time itself)
    train_races: int | None = None  # train on this many of each fold's training races (None: all)
    epochs_factor: int = 1
    width: int = 128


SHIPPED = Variant("split heads, asinh (shipped)")
VARIANTS = (
    Variant("one head for every lap", split=False),
    Variant("split heads, clip at +-10", scaling="clip"),
    SHIPPED,
    Variant("+ lap-time ratios", ratios=True),
    Variant("+ telemetry tokens, 16-dim projection", tokens="projected"),
    Variant("+ telemetry tokens, all 512", tokens="all"),
    Variant("next lap's time, not its change from lap L", residual=False),
    Variant(
        "no timing context (tactical + telemetry tokens + ratios)", context=False, tokens="all", ratios=True
    ),
    Variant("3 training races per fold", train_races=3),
    Variant("2 x epochs", epochs_factor=2),
    Variant("256 hidden units", width=256),
)


def calibrated_name(variant: Variant) -> str:
    return f"{variant.name}, corridor calibrated per regime"


@dataclass(frozen=True)
class AblationData:
    """Every row of the dataset as the ablation's networks and baselines see it."""

    context: np.ndarray  # [n, K] timing context
    tactical: np.ndarray  # [n, 4] tactical tensor, flattened
    tokens: np.ndarray  # [n, 2D] pooled tokens of the frozen base
    ratios: np.ndarray  # [n, 5] lap-time ratios from the telemetry
    ref: np.ndarray  # [n] lap L's fuel-corrected time, s
    target: np.ndarray  # [n] the next lap's fuel-corrected time, s
    special: np.ndarray  # [n] bool: lap L is an in/out-lap or neutralised (the split heads' gate)
    group: np.ndarray  # [n] int: index into contract.CALIBRATION_GROUPS
    race: np.ndarray
    regime: np.ndarray
    is_racing: np.ndarray  # [n] bool: the study's racing laps (clean or traffic)
    usable: np.ndarray  # [n] bool: finite, forecastable target (the study's training rows)

    @property
    def delta(self) -> np.ndarray:
        """What the pace heads predict: the next lap's time relative to lap L's, s."""
        return self.target - self.ref

    @property
    def timing(self) -> np.ndarray:
        """The timing-only inputs (context + tactical), as the shipped variant and the GBM see them."""
        return np.concatenate([self.context, self.tactical], 1).astype(np.float64)


# --- inputs -----------------------------------------------------------------------------------


def _telemetry_features(arrays: dict[str, np.ndarray], base: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pooled tokens [n, 2D], lap-time ratios [n, 5]) of the frozen base model."""
    import torch

    from strategist.model.checkpoint import load_checkpoint
    from strategist.model.core import StrategistModel, lap_time_ratios

    loaded, cfg, _ = load_checkpoint(base)
    model: StrategistModel = loaded
    pooled, ratios = [], []
    with torch.inference_mode():
        for start in range(0, len(arrays["telemetry"]), 512):
            tel = torch.from_numpy(arrays["telemetry"][start : start + 512])
            tac = torch.from_numpy(arrays["tactical"][start : start + 512])
            b, n = tel.shape[:2]
            laps = model.normalizer.telemetry(tel).reshape(b * n, cfg.n_steps, cfg.n_channels)
            tokens = model.embed_norm(model.stem(laps).view(b, n, cfg.d_model) + model.lap_pos_embedding)
            fused = model.fusion(
                model.encode_laps(tokens), model.tactical_embedding(model.normalizer.tactical(tac))
            )
            pooled.append(torch.cat([fused[:, 0], fused.mean(1)], -1).numpy())
            ratios.append(lap_time_ratios(cfg, tel).numpy())
    return np.concatenate(pooled), np.concatenate(ratios)


def _groups(tactical: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Calibration group of every row, by the model's own rule (strategist.model.core)."""
    import torch

    from strategist.model.core import calibration_groups

    onehot = calibration_groups(torch.from_numpy(tactical), torch.from_numpy(context))
    return onehot.argmax(1).numpy()


def load_ablation_data(data: Path, base: Path) -> AblationData:
    """The dataset's rows plus the frozen base's telemetry features."""
    arrays, _ = load_arrays(data)
    target = arrays["pace_target"].astype(np.float64)
    ref = arrays["pace_ref"].astype(np.float64)
    tokens, ratios = _telemetry_features(arrays, base)
    return AblationData(
        context=arrays["context"],
        tactical=arrays["tactical"].reshape(len(target), -1),
        tokens=tokens,
        ratios=ratios,
        ref=ref,
        target=target,
        special=(arrays["context"][:, _SPECIAL] > 0.5).any(1),
        group=_groups(arrays["tactical"], arrays["context"]),
        race=np.asarray(arrays["race"]),
        regime=np.asarray(arrays["regime"]),
        is_racing=racing(arrays),
        usable=np.isfinite(target - ref) & arrays["pace_forecastable"].astype(bool),
    )


def _standardise(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    return (values - values[train].mean(0)) / (values[train].std(0) + 1e-6)


def _design(variant: Variant, d: AblationData, train: np.ndarray) -> np.ndarray:
    """The variant's input matrix [n, F]; every statistic from the training rows only."""
    columns = [d.timing] if variant.context else [d.tactical.astype(np.float64)]
    if variant.ratios:
        columns.append(d.ratios)
    x = np.concatenate(columns, 1)
    centre, scale = robust_centre_scale(x[train])
    z = (x - centre) / scale
    blocks = [np.arcsinh(z) if variant.scaling == "asinh" else np.clip(z, -10, 10)]
    if variant.tokens == "all":
        blocks.append(_standardise(d.tokens, train))
    if not variant.residual:
        # Lap L's time enters linearly (robust-scaled, no asinh), so the network can carry it through.
        ref_centre, ref_scale = robust_centre_scale(d.ref[train])
        blocks.append(((d.ref - ref_centre) / ref_scale)[:, None])
    return np.concatenate(blocks, 1)


def training_races(variant: Variant, fold: dict[str, list[str]], seed: int, k: int) -> list[str]:
    """The races fold k trains the variant on: all but its test races, or a seeded few of them."""
    pool = sorted(fold["train"] + fold["val"])
    if variant.train_races is None or variant.train_races >= len(pool):
        return pool
    rng = np.random.default_rng([seed, k])
    return sorted(rng.choice(pool, size=variant.train_races, replace=False).tolist())


# --- forecasters ------------------------------------------------------------------------------


def _fit_predict(
    variant: Variant, z: np.ndarray, tokens: np.ndarray, y: np.ndarray, special: np.ndarray,
    train: np.ndarray, test: np.ndarray, seed: int, epochs: int,
) -> np.ndarray:  # fmt: skip
    """Train the variant's pace network on rows `train` to predict y, return [n_test, 3] quantiles.

    Each head's last layer starts at zero, i.e. at the training median of y: persistence when y is
    the change from lap L."""
    import torch
    from torch import nn

    y_centre, y_scale = robust_centre_scale(y[train])
    zt = torch.tensor(z, dtype=torch.float32)
    yt = torch.tensor((y - y_centre) / y_scale, dtype=torch.float32)
    gate = torch.tensor(special, dtype=torch.float32)[:, None]
    tok = torch.tensor(_standardise(tokens, train), dtype=torch.float32)
    torch.manual_seed(seed)
    width = z.shape[1] + (16 if variant.tokens == "projected" else 0)
    hidden = variant.width

    def mlp() -> nn.Module:
        last = nn.Linear(hidden, 3)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), last)

    racing_head, special_head = mlp(), mlp()
    projection = nn.Sequential(nn.Dropout(0.2), nn.Linear(tokens.shape[1], 16))
    params = [*racing_head.parameters(), *special_head.parameters(), *projection.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)
    rows = np.flatnonzero(train)
    steps = epochs * (len(rows) // 128 + 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    q = torch.tensor(QUANTILES, dtype=torch.float32)

    def forward(index: np.ndarray) -> torch.Tensor:
        inputs = zt[index]
        if variant.tokens == "projected":
            inputs = torch.cat([inputs, projection(tok[index])], 1)
        raw = racing_head(inputs)
        if variant.split:
            raw = gate[index] * special_head(inputs) + (1 - gate[index]) * raw
        m = raw[:, 1:2]
        return torch.cat(
            [m - nn.functional.softplus(raw[:, :1]), m, m + nn.functional.softplus(raw[:, 2:])], 1
        )

    rng = np.random.default_rng(seed)
    for module in (racing_head, special_head, projection):
        module.train()
    for _ in range(epochs):
        rng.shuffle(rows)
        for start in range(0, len(rows), 128):
            batch = rows[start : start + 128]
            diff = yt[batch, None] - forward(batch)
            loss = torch.maximum(q * diff, (q - 1) * diff).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    for module in (racing_head, special_head, projection):
        module.eval()
    with torch.no_grad():
        return forward(np.flatnonzero(test)).numpy() * y_scale + y_centre


def predict_variant(
    variant: Variant, d: AblationData, train: np.ndarray, test: np.ndarray, seed: int, epochs: int
) -> np.ndarray:
    """[n_test, 3] quantiles of the change from lap L, whatever the variant's own target."""
    y = d.delta if variant.residual else d.target
    z = _design(variant, d, train)
    quantiles = _fit_predict(
        variant, z, d.tokens, y, d.special, train, test, seed, epochs * variant.epochs_factor
    )
    return quantiles if variant.residual else quantiles - d.ref[test, None]


def _persistence(d: AblationData, train: np.ndarray, n_test: int) -> np.ndarray:
    """Lap L's time as P50, with a band of the training racing laps' changes (a racing-lap band)."""
    band = np.quantile(d.delta[train & d.is_racing], QUANTILES) * np.array([1.0, 0.0, 1.0])
    return np.tile(band, (n_test, 1))


def _timing_gbm(d: AblationData, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """LightGBM quantile regressors on the timing inputs, trained on racing laps (the study's bar)."""
    import lightgbm as lgb

    x, y = d.timing, d.delta
    rows = train & d.is_racing
    columns = [
        lgb.LGBMRegressor(
            objective="quantile",
            alpha=tau,
            n_estimators=400,
            learning_rate=0.03,
            num_leaves=15,
            min_child_samples=50,
            random_state=seed,
            n_jobs=2,
            verbose=-1,
        )
        .fit(x[rows], y[rows])
        .predict(x[test])
        for tau in QUANTILES
    ]
    return np.sort(np.stack(columns, axis=1), axis=1)


# --- corridor calibration ---------------------------------------------------------------------


def _group_scales(quantiles: np.ndarray, y: np.ndarray, group: np.ndarray) -> list[tuple[float, float]]:
    """(lower, upper) corridor scales per calibration group; a small group takes the pooled pair."""
    from strategist.train.calibrate import MIN_GROUP_SAMPLES, fit_interval_scale

    pooled = fit_interval_scale(quantiles, y, min_samples=MIN_GROUP_SAMPLES)
    scales = []
    for g in range(len(contract.CALIBRATION_GROUPS)):
        member = group == g
        enough = int(member.sum()) >= MIN_GROUP_SAMPLES
        scales.append(
            fit_interval_scale(quantiles[member], y[member], min_samples=MIN_GROUP_SAMPLES)
            if enough
            else pooled
        )
    return scales


def _widen(quantiles: np.ndarray, lower: float, upper: float) -> np.ndarray:
    m = quantiles[:, 1]
    return np.stack([m - lower * (m - quantiles[:, 0]), m, m + upper * (quantiles[:, 2] - m)], 1)


def cross_fitted_calibration(
    quantiles: np.ndarray, y: np.ndarray, group: np.ndarray, fold_of: np.ndarray
) -> tuple[np.ndarray, list[dict[str, list[float]]]]:
    """Out-of-fold quantiles with each fold's corridor rescaled per group by scales fitted on the
    other folds' rows only (fold_of: the fold that predicted each row, -1 for none); (quantiles,
    the scales per fold)."""
    out = quantiles.copy()
    report = []
    for k in range(int(fold_of.max()) + 1):
        fit = (fold_of >= 0) & (fold_of != k)
        scales = _group_scales(quantiles[fit], y[fit], group[fit])
        for g, (lower, upper) in enumerate(scales):
            rows = (fold_of == k) & (group == g)
            out[rows] = _widen(quantiles[rows], lower, upper)
        report.append(
            {
                name: [round(s, 4) for s in pair]
                for name, pair in zip(contract.CALIBRATION_GROUPS, scales, strict=True)
            }
        )
    return out, report


# --- scores -----------------------------------------------------------------------------------


def _pinball(y: np.ndarray, q: np.ndarray) -> float:
    diff = y[:, None] - q
    return float(np.mean(np.maximum(QUANTILES * diff, (QUANTILES - 1) * diff)))


def score_rows(quantiles: np.ndarray, y: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """P50 MAE, mean pinball and P10-P90 coverage per subset of rows."""
    row: dict[str, float] = {}
    for subset, rows in masks.items():
        q, t = quantiles[rows], y[rows]
        row[f"{subset}_mae"] = float(np.mean(np.abs(q[:, 1] - t)))
        row[f"{subset}_pinball"] = _pinball(t, q)
        row[f"{subset}_coverage"] = float(np.mean((t >= q[:, 0]) & (t <= q[:, 2])))
        row[f"{subset}_n"] = int(rows.sum())
    return row


def markdown(summary: dict[str, Any]) -> str:
    """The table: error ratios to persistence (lower is better) and absolute corridor coverage."""
    table = summary["table"]
    ref = table[PERSISTENCE]
    lines = [
        f"Racing-lap pace head ablation: {summary['n_races']} races, {summary['n_folds']} folds by race, "
        f"seed {summary['seed']}, {summary['epochs']} epochs; pooled out-of-fold. Errors are ratios to "
        "persistence (lower is better); coverage is the share of laps inside P10-P90 (goal 0.80).",
        "",
        "| variant | clean P50 MAE | traffic P50 MAE | racing mean pinball | clean P10-P90 coverage | traffic P10-P90 coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        ratios = [row[f"{s}"] / ref[s] for s in ("clean_mae", "traffic_mae", "racing_pinball")]
        lines.append(
            f"| {name} | " + " | ".join(f"{r:.3f}" for r in ratios)
            + f" | {row['clean_coverage']:.2f} | {row['traffic_coverage']:.2f} |"
        )  # fmt: skip
    lines += [
        "",
        f"Persistence: clean P50 MAE {ref['clean_mae']:.3f} s (n={ref['clean_n']}), traffic "
        f"{ref['traffic_mae']:.3f} s (n={ref['traffic_n']}), racing mean pinball {ref['racing_pinball']:.3f} s "
        f"(n={ref['racing_n']}). Wall time {summary['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """What the wall time was measured on: the machine, and the torch threads and niceness it ran with."""
    import torch

    return {
        **describe_machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "niceness": os.nice(0),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the study --------------------------------------------------------------------------------


def run_ablation(
    data: Path, out: Path, *, base: Path = BASE_CHECKPOINT_DIR, n_folds: int = 4, seed: int = 0,
    epochs: int = 8, variants: Sequence[Variant] = VARIANTS, results: Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Score every variant, persistence and the timing-only GBM; writes out/ablation.json / .md
    (and results/pace_ablation.json / .md with the command and the machine)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # small networks: one thread is steadiest on a shared CPU
    host = machine()
    started = time.perf_counter()
    d = load_ablation_data(data, base)
    seconds: dict[str, float] = {"inputs and telemetry features": time.perf_counter() - started}
    races = sorted(set(d.race.tolist()))
    folds = fold_plan(races, n_folds, seed)
    names = [PERSISTENCE, TIMING_GBM, *(v.name for v in variants)]
    predictions = {name: np.full((len(d.race), 3), np.nan) for name in names}
    fold_of = np.full(len(d.race), -1)
    fold_reports: list[dict[str, Any]] = []
    for k, fold in enumerate(tqdm(folds, desc="folds", unit="fold")):
        test = np.isin(d.race, fold["test"]) & d.usable
        train = np.isin(d.race, fold["train"] + fold["val"]) & d.usable
        fold_of[test] = k
        t0 = time.perf_counter()
        predictions[PERSISTENCE][test] = _persistence(d, train, int(test.sum()))
        predictions[TIMING_GBM][test] = _timing_gbm(d, train, test, seed)
        seconds[TIMING_GBM] = seconds.get(TIMING_GBM, 0.0) + time.perf_counter() - t0
        few: dict[str, list[str]] = {}
        for variant in variants:
            trained_on = training_races(variant, fold, seed, k)
            if variant.train_races is not None:
                few[variant.name] = trained_on
            rows = np.isin(d.race, trained_on) & d.usable
            t0 = time.perf_counter()
            predictions[variant.name][test] = predict_variant(variant, d, rows, test, seed, epochs)
            seconds[variant.name] = seconds.get(variant.name, 0.0) + time.perf_counter() - t0
        fold_reports.append({**fold, "training_races_of_variants": few})
    calibration: list[dict[str, list[float]]] = []
    if SHIPPED.name in predictions:
        calibrated, calibration = cross_fitted_calibration(
            predictions[SHIPPED.name], d.delta, d.group, fold_of
        )
        predictions[calibrated_name(SHIPPED)] = calibrated
    scored = fold_of >= 0
    masks = {
        "clean": scored & (d.regime == "clean"),
        "traffic": scored & (d.regime == "traffic"),
        "racing": scored & d.is_racing,
    }
    table = {name: score_rows(q, d.delta, masks) for name, q in predictions.items()}
    summary: dict[str, Any] = {
        "name": RESULTS_NAME,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": host,
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_step": {k: round(v, 1) for k, v in seconds.items()},
        "data": str(data),
        "base": str(base),
        "n_races": len(races),
        "n_folds": n_folds,
        "seed": seed,
        "epochs": epochs,
        "variants": [asdict(v) for v in variants],
        "folds": fold_reports,
        "calibration_scales_per_fold": calibration,
        "table": table,
    }
    report = markdown(summary)
    _write(out, "ablation", summary, report)
    if results is not None:
        _write(results, RESULTS_NAME, summary, report)
    return summary


def _write(folder: Path, stem: str, summary: dict[str, Any], report: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / f"{stem}.md").write_text(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset of the real races (runs/real/dataset)"
    )
    parser.add_argument("--out", type=Path, required=True, help="writes ablation.json / .md here")
    parser.add_argument(
        "--results", type=Path, default=None, help="also write pace_ablation.json / .md here (docs/results)"
    )
    parser.add_argument("--base", type=Path, default=BASE_CHECKPOINT_DIR)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--variants", nargs="+", default=None, metavar="NAME", help="only these variants (default: all)"
    )
    args = parser.parse_args(argv)
    chosen = VARIANTS if args.variants is None else tuple(v for v in VARIANTS if v.name in args.variants)
    command = "python -m strategist.pipeline.pace_ablation " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    run_ablation(
        args.data, args.out, base=args.base, n_folds=args.folds, seed=args.seed, epochs=args.epochs,
        variants=chosen, results=args.results, command=command,
    )  # fmt: skip
    print((args.out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
