"""Score every forecaster on one evaluation set: overall, per regime, and against the targets."""

from __future__ import annotations

import numpy as np

from strategist.evaluate import metrics
from strategist.evaluate.predictions import Arrays, Predictions

REGIMES: tuple[str, ...] = ("clean", "traffic", "pit", "sc")
NOISE_FLOOR = "noise floor"
ORACLE = "simulator oracle"
REFERENCES = (NOISE_FLOOR, ORACLE)  # rows that know the simulator's hidden state: not baselines

# Product targets on simulated races of circuits not seen in training.
TARGET_MAE_VS_FLOOR = 1.15
TARGET_COVERAGE = (0.77, 0.83)
TARGET_PINBALL_GAIN = 0.10
TARGET_ROC_AUC = 0.85
TARGET_ECE = 0.05
TARGET_TIRE_RMSE = 0.08


def score_forecaster(pred: Predictions, data: Arrays) -> dict:
    """{"pace": {"all": .., <regime>: ..}, "risk": .., "tire": ..} for the heads pred carries."""
    out: dict = {}
    if pred.pace_quantiles is not None:
        target = np.asarray(data["pace_target"], np.float64)
        quantiles = np.asarray(pred.pace_quantiles, np.float64)
        regime = np.asarray(data["regime"]).astype(str)
        out["pace"] = {"all": metrics.pace_metrics(target, quantiles)}
        for name in REGIMES:
            mask = regime == name
            if mask.any():
                out["pace"][name] = metrics.pace_metrics(target[mask], quantiles[mask])
    if pred.risk_probs is not None:
        risk = np.asarray(data["risk"], np.int64)
        out["risk"] = metrics.risk_metrics(risk, pred.risk_probs)
        out["risk"]["reliability"] = metrics.reliability_bins(risk != 0, 1.0 - pred.risk_probs[:, 0])
    if pred.tire_health is not None:
        out["tire"] = metrics.tire_metrics(data["tire_health"], np.asarray(pred.tire_health).reshape(-1))
    return out


def score_noise_floor(data: Arrays) -> dict | None:
    """The simulator's own floor per regime, or None on real races (no noise_sigma there)."""
    sigma = np.asarray(data.get("noise_sigma", np.array([])), np.float64)
    if len(sigma) == 0 or not np.all(np.isfinite(sigma)):
        return None
    regime = np.asarray(data["regime"]).astype(str)
    pace = {"all": metrics.gaussian_floor(sigma)}
    for name in REGIMES:
        mask = regime == name
        if mask.any():
            pace[name] = metrics.gaussian_floor(sigma[mask])
    return {"pace": pace}


def oracle_predictions(data: Arrays) -> Predictions | None:
    """The simulator's noise-free next lap as P50, +- 1.2816 noise s.d. as P10/P90 (simulated races only).

    Scored like any forecaster, it shows what the hidden deterministic lap time alone reaches; its
    MAE exceeds the analytic floor where interactions (traffic, duels) add to the noise.
    """
    clean = np.asarray(data.get("clean_target", np.array([])), np.float64)
    sigma = np.asarray(data.get("noise_sigma", np.array([])), np.float64)
    if len(clean) == 0 or not (np.all(np.isfinite(clean)) and np.all(np.isfinite(sigma))):
        return None
    z = 1.2815515655446004
    return Predictions(pace_quantiles=np.stack([clean - z * sigma, clean, clean + z * sigma], axis=1))


def check_targets(results: dict[str, dict], model_name: str, subset: str = "all") -> list[dict]:
    """Target, value and reached/missed for the model, on `subset` laps ("all" or a regime)."""
    model = results[model_name]
    checks: list[dict] = []

    def add(name: str, value: float | None, goal: str, reached: bool | None) -> None:
        checks.append({"target": name, "goal": goal, "value": value, "reached": reached})

    pace = model.get("pace", {}).get(subset)
    floor = results.get(NOISE_FLOOR, {}).get("pace", {}).get(subset)
    if pace and floor:
        ratio = pace["mae_p50"] / floor["mae_p50"]
        add("P50 MAE / noise-floor MAE", ratio, f"<= {TARGET_MAE_VS_FLOOR}", ratio <= TARGET_MAE_VS_FLOOR)
    if pace:
        cov = pace["coverage_p10_p90"]
        add("P10-P90 coverage", cov, "0.80 +- 0.03", TARGET_COVERAGE[0] <= cov <= TARGET_COVERAGE[1])
        rivals = [
            r["pace"][subset]["pinball_mean"]
            for name, r in results.items()
            if name != model_name and name not in REFERENCES and subset in r.get("pace", {})
        ]
        if rivals:
            gain = 1.0 - pace["pinball_mean"] / min(rivals)
            add(
                "mean pinball gain vs best baseline",
                gain,
                f">= {TARGET_PINBALL_GAIN:.2f}",
                gain >= TARGET_PINBALL_GAIN,
            )
    risk = model.get("risk")
    if risk and subset == "all":
        auc, ece = risk["roc_auc"], risk["ece"]
        add("risk ROC-AUC (bad lap)", auc, f">= {TARGET_ROC_AUC}", bool(auc >= TARGET_ROC_AUC))
        add("risk ECE", ece, f"<= {TARGET_ECE}", bool(ece <= TARGET_ECE))
    tire = model.get("tire")
    if tire and tire.get("n") and subset == "all":
        add("tire health RMSE", tire["rmse"], f"<= {TARGET_TIRE_RMSE}", tire["rmse"] <= TARGET_TIRE_RMSE)
    return checks
