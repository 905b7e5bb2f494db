"""PNG figures of one evaluation run: a stint's pace corridor and the risk reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strategist.evaluate.predictions import Arrays, Predictions


def longest_stint(data: Arrays) -> np.ndarray:
    """Indices of the longest run of consecutive laps of one driver in one race on the same tires.

    A run breaks where the lap number does not advance by one or the tire age does not either.
    """
    race, driver = np.asarray(data["race"]).astype(str), np.asarray(data["driver"]).astype(str)
    lap, life = np.asarray(data["lap"]), np.asarray(data["tyre_life"])
    order = np.lexsort((lap, driver, race))
    best: list[int] = []
    run: list[int] = []
    for i in order:
        if run:
            j = run[-1]
            same = race[i] == race[j] and driver[i] == driver[j]
            if not (same and lap[i] == lap[j] + 1 and life[i] == life[j] + 1):
                run = []
        run.append(int(i))
        if len(run) > len(best):
            best = list(run)
    return np.asarray(best, dtype=np.int64)


def plot_corridor(path: Path, data: Arrays, forecasts: dict[str, Predictions], model_name: str) -> None:
    """Actual fuel-corrected laps over one stint against the model's P10-P90 band and P50.

    Other forecasters with a pace head are drawn as dashed P50 lines for comparison.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = longest_stint(data)
    laps = np.asarray(data["lap"])[idx]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    model = forecasts[model_name].pace_quantiles
    if model is None:
        raise ValueError(f"{model_name} has no pace corridor to plot")
    ax.fill_between(
        laps, model[idx, 0], model[idx, 2], alpha=0.25, color="tab:blue", label=f"{model_name} P10-P90"
    )
    ax.plot(laps, model[idx, 1], color="tab:blue", label=f"{model_name} P50")
    for name, pred in forecasts.items():
        if name != model_name and pred.pace_quantiles is not None:
            ax.plot(laps, pred.pace_quantiles[idx, 1], linestyle="--", linewidth=1, label=f"{name} P50")
    ax.plot(laps, np.asarray(data["pace_target"])[idx], "ko", markersize=3, label="actual")
    race, driver = str(np.asarray(data["race"])[idx[0]]), str(np.asarray(data["driver"])[idx[0]])
    ax.set_title(f"Next-lap corridor, {race} / {driver}")
    ax.set_xlabel("lap")
    ax.set_ylabel("fuel-corrected lap time (s)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(path: Path, reliability: dict[str, dict]) -> None:
    """Observed bad-lap frequency against predicted probability, one line per forecaster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_hist) = plt.subplots(
        2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfect")
    for name, bins in reliability.items():
        pred, obs = np.asarray(bins["mean_pred"], float), np.asarray(bins["observed"], float)
        ok = np.isfinite(pred)
        ax.plot(pred[ok], obs[ok], marker="o", label=name)
        edges = np.asarray(bins["edges"])
        ax_hist.step(edges[:-1], np.asarray(bins["count"]), where="post", label=name)
    ax.set_ylabel("observed bad-lap frequency")
    ax.set_title("Reliability of P(bad next lap)")
    ax.legend(fontsize=8)
    ax_hist.set_yscale("log")
    ax_hist.set_xlabel("predicted P(bad lap)")
    ax_hist.set_ylabel("laps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
