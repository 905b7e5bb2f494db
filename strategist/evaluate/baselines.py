"""Reference forecasters the model has to beat, all fitted on the training dataset only.

- persistence: next fuel-corrected lap = lap L; band from the empirical residual quantiles.
- stint trend: OLS line through the stint's fuel-corrected laps, extrapolated one lap; band from the
  robust residual s.d. (normal quantiles); tire health as a straight line in tire age.
- climatology: the training set's class frequencies as the bad-lap probabilities.
- gbm: LightGBM on hand-made features (quantile objective per tau for pace, multiclass for risk,
  L2 regression for tire health).
- timing gbm: LightGBM on nothing but what the timing feed says (the timing context: exact
  fuel-corrected lap history relative to lap L, tyre life, stint lap, compound, track status, pit
  flags, race progress; plus the gaps and pace deltas to the cars around), trained on racing laps
  only. The bar the model must clear on racing laps: exact timing plus tyre state is worth ~8 %
  over persistence on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strategist.contract import CHANNELS, QUANTILES, RISK_CLASSES
from strategist.evaluate.predictions import Arrays, Predictions

_Z = {0.1: -1.2815515655446004, 0.5: 0.0, 0.9: 1.2815515655446004}  # standard normal quantiles


def _require(data: Arrays, *names: str) -> None:
    missing = [name for name in names if name not in data]
    if missing:
        raise ValueError(f"dataset lacks the arrays {missing} a baseline needs (see docs/data-format.md)")


def stint_trend_point(stint_fc_laps: np.ndarray) -> np.ndarray:
    """OLS line through each row's finite laps, evaluated one lap after the last.

    stint_fc_laps [n, k] oldest first, NaN-padded at the front. Rows with one lap give that lap;
    rows with none give NaN.
    """
    laps = np.asarray(stint_fc_laps, dtype=np.float64)
    n, k = laps.shape
    x = np.broadcast_to(np.arange(k, dtype=np.float64), (n, k))
    seen = np.isfinite(laps)
    count = seen.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mean = np.where(seen, x, 0.0).sum(axis=1) / count
        y_mean = np.where(seen, laps, 0.0).sum(axis=1) / count
        dx = np.where(seen, x - x_mean[:, None], 0.0)
        dy = np.where(seen, laps - y_mean[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = np.where(sxx > 0, (dx * dy).sum(axis=1) / np.where(sxx > 0, sxx, 1.0), 0.0)
    # The next lap sits at x = k (the stint array ends at index k - 1 = lap L).
    return np.where(count > 0, y_mean + slope * (k - x_mean), np.nan)


class Persistence:
    """P50 = fuel-corrected lap L; P10/P90 = lap L + residual quantiles seen in training.

    racing_only: the band from racing laps only (regime clean or traffic), what "same as last lap"
    with an honest corridor means for the laps a corridor is for; otherwise from every lap, pit and
    SC jumps included (a wide band)."""

    def __init__(self, racing_only: bool = False) -> None:
        self.racing_only = racing_only
        self.name = "persistence, racing band" if racing_only else "persistence"
        self.offsets: np.ndarray | None = None  # [3] residual quantiles, s

    def fit(self, train: Arrays) -> Persistence:
        _require(train, "pace_ref", "pace_target")
        residual = np.asarray(train["pace_target"], np.float64) - np.asarray(train["pace_ref"], np.float64)
        if self.racing_only:
            _require(train, "regime")
            residual = residual[racing_mask(train)]
        residual = residual[np.isfinite(residual)]
        if len(residual) == 0:
            raise ValueError("persistence baseline: no finite pace residuals in the training data")
        offsets = np.quantile(residual, QUANTILES)
        offsets[1] = 0.0  # the point forecast stays the last lap itself
        self.offsets = offsets
        return self

    def predict(self, data: Arrays) -> Predictions:
        if self.offsets is None:
            raise RuntimeError("persistence baseline used before fit()")
        _require(data, "pace_ref")
        ref = np.asarray(data["pace_ref"], np.float64)
        return Predictions(pace_quantiles=ref[:, None] + self.offsets[None, :])


class StintTrend:
    """Linear trend over the current stint; falls back to lap L where the stint has no laps."""

    name = "stint trend"

    def __init__(self) -> None:
        self.sigma: float | None = None
        self.tire_coef: np.ndarray | None = None  # [2] intercept, slope per lap of tire age

    def _point(self, data: Arrays) -> np.ndarray:
        point = stint_trend_point(data["stint_fc_laps"])
        return np.where(np.isfinite(point), point, np.asarray(data["pace_ref"], np.float64))

    def fit(self, train: Arrays) -> StintTrend:
        _require(train, "stint_fc_laps", "pace_ref", "pace_target", "tyre_life", "tire_health")
        residual = np.asarray(train["pace_target"], np.float64) - self._point(train)
        residual = residual[np.isfinite(residual)]
        if len(residual) < 2:
            raise ValueError("stint trend baseline: fewer than 2 finite residuals in the training data")
        # Robust s.d. (1.4826 x median absolute deviation): pit and safety-car laps are residuals of
        # 20-50 s that would otherwise blow the band up to tens of seconds on every lap.
        self.sigma = float(1.4826 * np.median(np.abs(residual - np.median(residual))))
        age = np.asarray(train["tyre_life"], np.float64)
        health = np.asarray(train["tire_health"], np.float64)
        known = np.isfinite(age) & np.isfinite(health)
        if known.sum() >= 2:
            slope, intercept = np.polyfit(age[known], health[known], 1)
            self.tire_coef = np.array([intercept, slope])
        return self

    def predict(self, data: Arrays) -> Predictions:
        if self.sigma is None:
            raise RuntimeError("stint trend baseline used before fit()")
        _require(data, "stint_fc_laps", "pace_ref", "tyre_life")
        point = self._point(data)
        z = np.array([_Z[tau] for tau in QUANTILES])
        tire = None
        if self.tire_coef is not None:
            age = np.asarray(data["tyre_life"], np.float64)
            tire = np.clip(self.tire_coef[0] + self.tire_coef[1] * age, 0.0, 1.0)
        return Predictions(pace_quantiles=point[:, None] + self.sigma * z[None, :], tire_health=tire)


class Climatology:
    """Bad-lap probabilities = class frequencies of the training data, the same for every lap."""

    name = "climatology"

    def __init__(self) -> None:
        self.freq: np.ndarray | None = None  # [3]

    def fit(self, train: Arrays) -> Climatology:
        _require(train, "risk")
        counts = np.bincount(np.asarray(train["risk"], np.int64), minlength=len(RISK_CLASSES))
        if counts.sum() == 0:
            raise ValueError("climatology baseline: the training data has no samples")
        self.freq = counts / counts.sum()
        return self

    def predict(self, data: Arrays) -> Predictions:
        if self.freq is None:
            raise RuntimeError("climatology baseline used before fit()")
        n = len(data["risk"]) if "risk" in data else len(data["pace_ref"])
        return Predictions(risk_probs=np.tile(self.freq, (n, 1)))


def hand_features(data: Arrays) -> np.ndarray:
    """Features a race engineer would compute by hand, [n, 17] float32 (NaN where unknown).

    Recent fuel-corrected laps relative to lap L, the stint trend, tire age, the tactical gaps, and
    four telemetry summaries of lap L (mean/max speed, mean throttle, braking share).
    """
    _require(data, "pace_ref", "fc_laps", "stint_fc_laps", "tyre_life", "tactical", "telemetry")
    ref = np.asarray(data["pace_ref"], np.float64)
    fc = np.asarray(data["fc_laps"], np.float64)  # [n, 5]
    trend = stint_trend_point(data["stint_fc_laps"]) - ref
    stint_len = np.isfinite(np.asarray(data["stint_fc_laps"], np.float64)).sum(axis=1)
    tactical = np.asarray(data["tactical"], np.float64).reshape(len(ref), -1)  # [n, 4]
    lap_l = np.asarray(data["telemetry"][:, 0], np.float64)  # [n, 100, channels]
    speed, throttle, brake = (lap_l[..., CHANNELS.index(c)] for c in ("Speed", "Throttle", "Brake"))
    columns = [
        ref,
        *(fc[:, k] - ref for k in range(1, fc.shape[1])),
        trend,
        stint_len,
        np.asarray(data["tyre_life"], np.float64),
        *(tactical[:, k] for k in range(tactical.shape[1])),
        speed.mean(axis=1),
        speed.max(axis=1),
        throttle.mean(axis=1),
        brake.mean(axis=1),
    ]
    return np.stack(columns, axis=1).astype(np.float32)


class GradientBoosting:
    """LightGBM on `hand_features`: one quantile model per tau, a multiclass risk model, tire health."""

    name = "gbm"

    def __init__(self, n_estimators: int = 300, max_train: int = 60_000, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_train = max_train
        self.seed = seed
        self.pace_models: list[Any] = []  # lightgbm.LGBMRegressor per tau
        self.risk_model: Any = None  # lightgbm.LGBMClassifier
        self.risk_classes: np.ndarray | None = None
        self.tire_model: Any = None  # lightgbm.LGBMRegressor

    def _params(self) -> dict:
        return dict(
            n_estimators=self.n_estimators,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=40,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.9,
            random_state=self.seed,
            n_jobs=2,
            verbose=-1,
        )

    def fit(self, train: Arrays) -> GradientBoosting:
        import lightgbm as lgb

        _require(train, "pace_target", "risk", "tire_health")
        features = hand_features(train)
        rows = np.arange(len(features))
        if len(rows) > self.max_train:  # keeps the fit to seconds on two cores
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_train, replace=False))
        x = features[rows]
        delta = (np.asarray(train["pace_target"], np.float64) - np.asarray(train["pace_ref"], np.float64))[
            rows
        ]
        ok = np.isfinite(delta)
        self.pace_models = [
            lgb.LGBMRegressor(objective="quantile", alpha=tau, **self._params()).fit(x[ok], delta[ok])
            for tau in QUANTILES
        ]
        risk = np.asarray(train["risk"], np.int64)[rows]
        self.risk_classes = np.unique(risk)
        if len(self.risk_classes) > 1:
            self.risk_model = lgb.LGBMClassifier(**self._params()).fit(x, risk)
        health = np.asarray(train["tire_health"], np.float64)[rows]
        known = np.isfinite(health)
        if known.sum() > 10:
            self.tire_model = lgb.LGBMRegressor(**self._params()).fit(x[known], health[known])
        return self

    def predict(self, data: Arrays) -> Predictions:
        if not self.pace_models or self.risk_classes is None:
            raise RuntimeError("gbm baseline used before fit()")
        x = hand_features(data)
        ref = np.asarray(data["pace_ref"], np.float64)
        pace = ref[:, None] + np.stack([m.predict(x) for m in self.pace_models], axis=1)
        probs = np.zeros((len(x), len(RISK_CLASSES)))
        if self.risk_model is not None:
            probs[:, self.risk_classes] = self.risk_model.predict_proba(x)
        else:  # one class only in training: certainty on it
            probs[:, self.risk_classes[0]] = 1.0
        tire = None if self.tire_model is None else np.clip(self.tire_model.predict(x), 0.0, 1.0)
        return Predictions(pace_quantiles=pace, risk_probs=probs, tire_health=tire)


def racing_mask(data: Arrays) -> np.ndarray:
    """[n] bool: L and L+1 green, same stint, neither an in- or out-lap (regime clean or traffic)."""
    return np.isin(np.asarray(data["regime"]), ("clean", "traffic"))


def timing_features(data: Arrays) -> np.ndarray:
    """[n, K + 4] float32: the timing context and the flattened tactical tensor."""
    _require(data, "context", "tactical")
    n = len(data["context"])
    return np.concatenate(
        [np.asarray(data["context"], np.float32), np.asarray(data["tactical"], np.float32).reshape(n, -1)],
        axis=1,
    )


class TimingGradientBoosting:
    """LightGBM quantile models on `timing_features`, fitted on racing laps (pace only)."""

    name = "timing gbm"
    min_laps = 50

    def __init__(self, n_estimators: int = 400, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.seed = seed
        self.pace_models: list[Any] = []

    def _params(self) -> dict:
        # Shallow trees and large leaves: ~10k racing laps, and the signal is a few lap-time deltas.
        return dict(
            n_estimators=self.n_estimators,
            learning_rate=0.03,
            num_leaves=15,
            min_child_samples=50,
            random_state=self.seed,
            n_jobs=2,
            verbose=-1,
        )

    def fit(self, train: Arrays) -> TimingGradientBoosting:
        import lightgbm as lgb

        _require(train, "pace_target", "pace_ref", "regime")
        delta = np.asarray(train["pace_target"], np.float64) - np.asarray(train["pace_ref"], np.float64)
        rows = racing_mask(train) & np.isfinite(delta)
        if rows.sum() < self.min_laps:
            raise ValueError(
                f"timing gbm: {int(rows.sum())} racing laps to fit on, need at least {self.min_laps}"
            )
        x = timing_features(train)[rows]
        self.pace_models = [
            lgb.LGBMRegressor(objective="quantile", alpha=tau, **self._params()).fit(x, delta[rows])
            for tau in QUANTILES
        ]
        return self

    def predict(self, data: Arrays) -> Predictions:
        if not self.pace_models:
            raise RuntimeError("timing gbm baseline used before fit()")
        x = timing_features(data)
        raw = np.stack([m.predict(x) for m in self.pace_models], axis=1)
        # Separately fitted quantile models can cross; sorting restores P10 <= P50 <= P90.
        ref = np.asarray(data["pace_ref"], np.float64)
        return Predictions(pace_quantiles=ref[:, None] + np.sort(raw, axis=1))


def fit_baselines(train: Arrays, *, gbm_estimators: int = 300, seed: int = 0) -> list:
    """All fitted baselines, in the order the tables list them."""
    return [
        Persistence().fit(train),
        StintTrend().fit(train),
        Climatology().fit(train),
        GradientBoosting(n_estimators=gbm_estimators, seed=seed).fit(train),
        # Needs racing laps to learn from (a short simulated smoke run may have too few).
        *(
            [TimingGradientBoosting(seed=seed).fit(train)]
            if "context" in train and racing_mask(train).sum() >= TimingGradientBoosting.min_laps
            else []
        ),
    ]
