"""Ablation of the racing-lap pace head on the real races, fast enough to try many choices.

    python -m strategist.pipeline.pace_ablation --data runs/real/dataset --out runs/ablation

The full model takes minutes per fold; this study replaces it by the part that decides racing-lap
accuracy, a small pace network on the model's own inputs, trained with the same pinball loss, the
same folds by race (strategist.pipeline.real_study.fold_plan) and the same rows (forecastable
targets), and scores each variant against persistence and the timing-only GBM on the pooled
out-of-fold predictions. Variants switch one thing at a time:

- split: two heads chosen by lap L's flags (pit / neutralised L) vs one head for every lap;
- scaling of the context: robust scale + clip at +-10 vs robust scale + asinh;
- telemetry tokens: the frozen pre-trained base's pooled tokens (2 x 256) appended, or a learnt
  16-dim projection of them, vs none;
- lap-time ratios from the telemetry (mean 1/Speed per slot vs lap L) appended.

The "telemetry" variants need a base checkpoint (default: the shipped VirtualStrategist-Base).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strategist import contract
from strategist.data.dataset_format import load_arrays, robust_centre_scale
from strategist.paths import BASE_CHECKPOINT_DIR
from strategist.pipeline.real_study import RealStudyPlan, fold_plan, racing

QUANTILES = np.asarray(contract.QUANTILES)
EPOCHS = 8  # of the small pace network (seconds per fold); folds and seed are the study's
_SPECIAL = [
    contract.CONTEXT_FEATURES.index(f"L.{n}")
    for n in ("pit_in", "pit_out", "status_sc", "status_vsc", "status_red")
]


@dataclass(frozen=True)
class Variant:
    name: str
    split: bool = True
    scaling: str = "asinh"  # "asinh" | "clip"
    tokens: str = "none"  # "none" | "all" | "projected"
    ratios: bool = False


VARIANTS = (
    Variant("one head for every lap", split=False),
    Variant("split heads, clip at +-10", scaling="clip"),
    Variant("split heads, asinh (shipped)"),
    Variant("+ lap-time ratios", ratios=True),
    Variant("+ telemetry tokens, 16-dim projection", tokens="projected"),
    Variant("+ telemetry tokens, all 512", tokens="all"),
)


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


def _fit_predict(
    variant: Variant, x: np.ndarray, tokens: np.ndarray, y: np.ndarray, special: np.ndarray,
    train: np.ndarray, test: np.ndarray, seed: int, epochs: int,
) -> np.ndarray:  # fmt: skip
    """Train the variant's pace network on rows `train`, return [n_test, 3] quantiles (s)."""
    import torch
    from torch import nn

    centre, scale = robust_centre_scale(x[train])
    z = (x - centre) / scale
    z = np.arcsinh(z) if variant.scaling == "asinh" else np.clip(z, -10, 10)
    if variant.tokens == "all":
        mean, std = tokens[train].mean(0), tokens[train].std(0) + 1e-6
        z = np.concatenate([z, (tokens - mean) / std], 1)
    y_centre, y_scale = robust_centre_scale(y[train])
    zt = torch.tensor(z, dtype=torch.float32)
    yt = torch.tensor((y - y_centre) / y_scale, dtype=torch.float32)
    gate = torch.tensor(special, dtype=torch.float32)[:, None]
    tok = torch.tensor((tokens - tokens[train].mean(0)) / (tokens[train].std(0) + 1e-6), dtype=torch.float32)
    torch.manual_seed(seed)
    width = z.shape[1] + (16 if variant.tokens == "projected" else 0)

    def mlp() -> nn.Module:
        last = nn.Linear(128, 3)
        nn.init.zeros_(last.weight)  # start from persistence, as the model's pace heads do
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Linear(width, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), last)

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


def _pinball(y: np.ndarray, q: np.ndarray) -> float:
    diff = y[:, None] - q
    return float(np.mean(np.maximum(QUANTILES * diff, (QUANTILES - 1) * diff)))


def run_ablation(
    data: Path, out: Path, *, base: Path = BASE_CHECKPOINT_DIR, n_folds: int = RealStudyPlan.n_folds,
    seed: int = RealStudyPlan.seed, epochs: int = EPOCHS, variants: Sequence[Variant] = VARIANTS,
) -> dict[str, Any]:  # fmt: skip
    """Score every variant, persistence and the timing-only GBM; writes ablation.json / .md."""
    import lightgbm as lgb
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # small networks: one thread is steadiest on a shared CPU
    arrays, _ = load_arrays(data)
    y = (arrays["pace_target"].astype(np.float64) - arrays["pace_ref"]).astype(np.float64)
    usable = np.isfinite(y) & arrays["pace_forecastable"].astype(bool)
    x = np.concatenate([arrays["context"], arrays["tactical"].reshape(len(y), -1)], 1).astype(np.float64)
    tokens, ratios = _telemetry_features(arrays, base)
    special = (arrays["context"][:, _SPECIAL] > 0.5).any(1)
    is_racing = racing(arrays)
    regime = np.asarray(arrays["regime"])
    races = sorted(set(arrays["race"].tolist()))
    folds = fold_plan(races, n_folds, seed)
    names = ["persistence", "timing gbm", *(v.name for v in variants)]
    predictions = {name: np.full((len(y), 3), np.nan) for name in names}
    started = time.perf_counter()
    for fold in tqdm(folds, desc="folds", unit="fold"):
        test = np.isin(arrays["race"], fold["test"]) & usable
        train = np.isin(arrays["race"], fold["train"] + fold["val"]) & usable
        residual = y[train & is_racing]
        predictions["persistence"][test] = np.quantile(residual, QUANTILES) * np.array([1.0, 0.0, 1.0])
        gbm_rows = train & is_racing
        predictions["timing gbm"][test] = np.sort(
            np.stack(
                [
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
                    .fit(x[gbm_rows], y[gbm_rows])
                    .predict(x[test])  # fmt: skip
                    for tau in QUANTILES
                ],
                axis=1,
            ),
            axis=1,
        )
        for variant in variants:
            features = np.concatenate([x, ratios], 1) if variant.ratios else x
            predictions[variant.name][test] = _fit_predict(
                variant, features, tokens, y, special, train, test, seed, epochs
            )
    scored = usable & np.isfinite(predictions["persistence"][:, 1])
    table: dict[str, dict[str, float]] = {}
    for name in names:
        row: dict[str, float] = {}
        for subset, mask in (
            ("clean", regime == "clean"),
            ("traffic", regime == "traffic"),
            ("racing", is_racing),
        ):
            rows = scored & mask
            row[f"{subset}_mae"] = float(np.mean(np.abs(predictions[name][rows, 1] - y[rows])))
            row[f"{subset}_pinball"] = _pinball(y[rows], predictions[name][rows])
        table[name] = row
    ref = table["persistence"]
    lines = [
        f"Racing-lap pace head ablation: {len(races)} races, {n_folds} folds by race, seed {seed}; "
        "ratios to persistence (lower is better), pooled out-of-fold.",
        "",
        "| variant | clean P50 MAE | traffic P50 MAE | racing mean pinball |",
        "|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['clean_mae'] / ref['clean_mae']:.3f} | {row['traffic_mae'] / ref['traffic_mae']:.3f} "
            f"| {row['racing_pinball'] / ref['racing_pinball']:.3f} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    summary = {"table": table, "folds": folds, "seconds": round(time.perf_counter() - started, 1)}
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset of the real races (runs/real/dataset)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", type=Path, default=BASE_CHECKPOINT_DIR)
    parser.add_argument("--folds", type=int, default=RealStudyPlan.n_folds)
    parser.add_argument("--seed", type=int, default=RealStudyPlan.seed)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    run_ablation(args.data, args.out, base=args.base, n_folds=args.folds, seed=args.seed, epochs=args.epochs)
    print((args.out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
