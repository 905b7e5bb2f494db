"""Scores for the three heads, each a plain function of numpy arrays.

Shapes: `n` samples; pace quantiles are [n, 3] in the order of `contract.QUANTILES`, in seconds (any
common reference: absolute fuel-corrected lap times or deltas, as long as target and prediction
share it); risk probabilities are [n, 3] over `contract.RISK_CLASSES`; tire health is [n].
"""

from __future__ import annotations

import math

import numpy as np

from strategist.contract import QUANTILES, RISK_CLASSES

_EPS = 1e-7


def _check_pace(target: np.ndarray, quantiles: np.ndarray) -> None:
    if quantiles.ndim != 2 or quantiles.shape[1] != len(QUANTILES):
        raise ValueError(f"pace quantiles must be [n, {len(QUANTILES)}], got {list(quantiles.shape)}")
    if target.shape != (quantiles.shape[0],):
        raise ValueError(f"pace target must be [{quantiles.shape[0]}], got {list(target.shape)}")


def pinball(target: np.ndarray, quantile: np.ndarray, tau: float) -> float:
    """Mean pinball loss: tau * (y - q) where y >= q, (1 - tau) * (q - y) where y < q."""
    diff = np.asarray(target, dtype=np.float64) - np.asarray(quantile, dtype=np.float64)
    return float(np.mean(np.maximum(tau * diff, (tau - 1.0) * diff)))


def pace_metrics(target: np.ndarray, quantiles: np.ndarray) -> dict[str, float]:
    """Pinball per quantile and mean, P50 MAE, P10-P90 coverage and width, crossing rate.

    target [n]; quantiles [n, 3]. Coverage counts y in [P10, P90] as the quantiles come (a crossed
    pair covers nothing), so crossings are never hidden by sorting.
    """
    target = np.asarray(target, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    _check_pace(target, quantiles)
    if len(target) == 0:
        return {"n": 0}
    lo, mid, hi = quantiles[:, 0], quantiles[:, 1], quantiles[:, 2]
    out: dict[str, float] = {"n": int(len(target))}
    per_tau = [pinball(target, quantiles[:, k], tau) for k, tau in enumerate(QUANTILES)]
    for tau, value in zip(QUANTILES, per_tau, strict=True):
        out[f"pinball_p{round(tau * 100)}"] = value
    out["pinball_mean"] = float(np.mean(per_tau))
    out["mae_p50"] = float(np.mean(np.abs(target - mid)))
    out["coverage_p10_p90"] = float(np.mean((target >= lo) & (target <= hi)))
    out["below_p10"] = float(np.mean(target < lo))
    out["above_p90"] = float(np.mean(target > hi))
    out["width_p10_p90"] = float(np.mean(hi - lo))
    out["crossing_rate"] = float(np.mean((lo > mid) | (mid > hi)))
    return out


def gaussian_floor(noise_sigma: np.ndarray) -> dict[str, float]:
    """Scores of a forecaster that knows the noise-free lap and the noise s.d. (the simulator's floor).

    For y = clean + N(0, sigma^2): E|y - clean| = sigma * sqrt(2/pi) and the best possible expected
    pinball at tau is sigma * phi(Phi^-1(tau)). Averaged over the samples' sigma [n].
    """
    from scipy.stats import norm

    sigma = np.asarray(noise_sigma, dtype=np.float64)
    if len(sigma) == 0 or not np.all(np.isfinite(sigma)):
        raise ValueError("noise floor needs a finite noise_sigma for every sample (simulated races only)")
    mean_sigma = float(np.mean(sigma))
    out: dict[str, float] = {"n": int(len(sigma))}
    per_tau = [mean_sigma * float(norm.pdf(norm.ppf(tau))) for tau in QUANTILES]
    for tau, value in zip(QUANTILES, per_tau, strict=True):
        out[f"pinball_p{round(tau * 100)}"] = value
    out["pinball_mean"] = float(np.mean(per_tau))
    out["mae_p50"] = mean_sigma * math.sqrt(2.0 / math.pi)
    out["coverage_p10_p90"] = 0.8
    out["width_p10_p90"] = mean_sigma * 2.0 * float(norm.ppf(0.9))
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.asarray(scores, dtype=np.float64))  # average ranks handle ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise); NaN without positives."""
    labels = np.asarray(labels).astype(bool)
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    scores_sorted = np.asarray(scores, dtype=np.float64)[order]
    hits = labels[order]
    # Thresholds only where the score changes, so tied scores enter together.
    last_of_tie = np.r_[scores_sorted[1:] != scores_sorted[:-1], True]
    tp = np.cumsum(hits)[last_of_tie]
    seen = (np.arange(len(hits)) + 1)[last_of_tie]
    precision = tp / seen
    recall = tp / labels.sum()
    recall_gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_gain * precision))


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Equal-width bins of predicted probability: count, mean prediction, observed frequency per bin."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin b holds edges[b] <= p < edges[b+1]; p == 1 goes into the last bin.
    index = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    sum_pred = np.bincount(index, weights=probs, minlength=n_bins)
    sum_obs = np.bincount(index, weights=labels, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(count > 0, sum_pred / count, np.nan)
        observed = np.where(count > 0, sum_obs / count, np.nan)
    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "mean_pred": mean_pred.tolist(),
        "observed": observed.tolist(),
    }


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / N) * |observed_b - mean_pred_b| over equal-width bins."""
    bins = reliability_bins(labels, probs, n_bins)
    count = np.asarray(bins["count"])
    gap = np.abs(np.asarray(bins["observed"]) - np.asarray(bins["mean_pred"]))
    total = count.sum()
    if total == 0:
        return float("nan")
    return float(np.nansum(count * gap) / total)


def risk_metrics(risk: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Scores of the bad-lap head. risk [n] int class index; probs [n, 3] rows summing to 1.

    "Bad lap" is any class other than 0 (`none`); its probability is 1 - probs[:, 0]. Log loss is the
    multiclass one; Brier, Brier skill (against the evaluated set's own base rate), ROC-AUC, PR-AUC
    and ECE are on the binary bad-lap event. One-vs-rest ROC-AUC per class where the class occurs.
    """
    risk = np.asarray(risk).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(RISK_CLASSES)
    if probs.ndim != 2 or probs.shape != (len(risk), n_classes):
        raise ValueError(f"risk probs must be [{len(risk)}, {n_classes}], got {list(probs.shape)}")
    if len(risk) and (risk.min() < 0 or risk.max() >= n_classes):
        raise ValueError(f"risk labels must be in 0..{n_classes - 1}, got {risk.min()}..{risk.max()}")
    if len(risk) == 0:
        return {"n": 0}
    bad = (risk != 0).astype(np.float64)
    p_bad = np.clip(1.0 - probs[:, 0], 0.0, 1.0)
    base_rate = float(bad.mean())
    brier = float(np.mean((p_bad - bad) ** 2))
    reference = base_rate * (1.0 - base_rate)
    out: dict[str, float] = {
        "n": int(len(risk)),
        "base_rate": base_rate,
        "log_loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(risk)), risk], _EPS, 1.0)))),
        "brier": brier,
        "brier_skill": float(1.0 - brier / reference) if reference > 0 else float("nan"),
        "roc_auc": roc_auc(bad, p_bad),
        "pr_auc": pr_auc(bad, p_bad),
        "ece": expected_calibration_error(bad, p_bad, n_bins),
    }
    for k, name in enumerate(RISK_CLASSES):
        out[f"roc_auc_{name}"] = roc_auc(risk == k, probs[:, k])
    return out


def tire_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of tire health over samples whose truth is known (NaN truth is skipped)."""
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if truth.shape != predicted.shape:
        raise ValueError(
            f"tire health truth {list(truth.shape)} and prediction {list(predicted.shape)} differ"
        )
    known = np.isfinite(truth)
    if not known.any():
        return {"n": 0}
    err = predicted[known] - truth[known]
    return {
        "n": int(known.sum()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
    }
