"""Request and response bodies of the gateway (pydantic). No tensor code here: see preprocess.py.

Validation happens here, before any model work, so a bad request gets a 422 that names the field
(`laps.2.channels`), the sample and the reason. Limits are physical: a value outside them is a
sensor or client error, never something the model should be asked about.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from strategist import contract

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

# Physical range of each telemetry channel (inclusive). Throttle reads 104 at standstill on real
# FastF1 data (a sensor artefact), hence the 110 ceiling.
CHANNEL_LIMITS: dict[str, tuple[float, float]] = {
    "Speed": (0.0, 420.0),
    "Throttle": (0.0, 110.0),
    "Brake": (0.0, 1.0),
    "RPM": (0.0, 20_000.0),
    "nGear": (0.0, 8.0),
}
assert set(CHANNEL_LIMITS) == set(contract.CHANNELS)

MIN_RAW_SAMPLES = 20  # a ~90 s lap at FastF1's ~4 Hz has ~360; fewer than 20 cannot describe a lap
MAX_RAW_SAMPLES = 20_000
LAP_DISTANCE_RANGE_M = (500.0, 10_000.0)  # shortest/longest plausible lap span (Monaco 3.3 km, Spa 7 km)
LAP_DURATION_RANGE_S = (10.0, 600.0)
LAP_TIME_RANGE_S = (30.0, 600.0)
MAX_GAP_S = 10_000.0  # gaps beyond contract.NO_CAR_GAP_S are clipped to "no car" by the Data Engine
MAX_ABS_PACE_DELTA_S = 60.0


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_channel_samples(channels: dict[str, np.ndarray]) -> None:
    """Same length, physical range and whole-number checks of a lap's channels (ValueError naming the
    channel, sample and reason). Shared by the JSON schema and the binary body (server/binary_format.py)
    so both formats reject the same laps with the same messages."""
    lengths = {name: len(values) for name, values in channels.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"all channels need the same number of samples, got {lengths}")
    for name, (low, high) in CHANNEL_LIMITS.items():
        values = channels[name]
        outside = (values < low) | (values > high)
        if outside.any():
            i = _first_bad(outside)
            raise ValueError(
                f"{name} value {values[i]:g} at sample {i} is outside the physical range "
                f"{low:g}..{high:g} {contract.CHANNEL_UNITS[name]}"
            )
        if name in contract.DISCRETE_CHANNELS:
            fractional = values != np.round(values)
            if fractional.any():
                i = _first_bad(fractional)
                raise ValueError(f"{name} value {values[i]:g} at sample {i} is not a whole number")


def check_raw_index(index_name: str, index: np.ndarray, n: int) -> None:
    """Sample count, length match, no going back and a plausible span of a raw lap's index."""
    if not MIN_RAW_SAMPLES <= n <= MAX_RAW_SAMPLES:
        raise ValueError(f"a raw lap needs {MIN_RAW_SAMPLES}..{MAX_RAW_SAMPLES} samples per channel, got {n}")
    if index.size != n:
        raise ValueError(f"{index_name} has {index.size} values but the channels have {n}")
    # Repeated values are allowed (a stopped car; FastF1 repeats timestamps), going back is not.
    backwards = np.diff(index) < 0
    if backwards.any():
        i = _first_bad(backwards)
        raise ValueError(
            f"{index_name} must not decrease: sample {i + 1} goes {index[i]:g} -> {index[i + 1]:g}"
        )
    span = float(index[-1] - index[0])
    low, high = LAP_DISTANCE_RANGE_M if index_name == "distance_m" else LAP_DURATION_RANGE_S
    if not low <= span <= high:
        unit = "m" if index_name == "distance_m" else "s"
        raise ValueError(
            f"{index_name} spans {span:g} {unit}, outside the plausible lap {low:g}..{high:g} {unit}"
        )


class LapTelemetry(BaseModel):
    """One lap of one car, in one of three forms (exactly one):

    - raw, indexed by distance: `distance_m` + `channels` (same length, distance non-decreasing);
    - raw, indexed by time: `time_s` + `channels` (same length, time increasing);
    - already aligned: `aligned: true` + `channels` with exactly 100 values each (distance steps).

    Raw laps are aligned onto 100 distance steps by the Data Engine, the same code training used.
    """

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, list[FiniteFloat]] = Field(
        description=f"Samples per channel; keys exactly {list(contract.CHANNELS)} "
        f"(units {contract.CHANNEL_UNITS})."
    )
    distance_m: list[FiniteFloat] | None = Field(default=None, description="Distance from the lap start, m.")
    time_s: list[FiniteFloat] | None = Field(
        default=None, description="Time from the lap start (or session), s."
    )
    aligned: bool = Field(
        default=False, description="True when `channels` already hold the 100 distance steps."
    )

    @field_validator("channels")
    @classmethod
    def _known_channels_in_range(cls, channels: dict[str, list[float]]) -> dict[str, list[float]]:
        missing = [c for c in contract.CHANNELS if c not in channels]
        unknown = [c for c in channels if c not in contract.CHANNELS]
        if missing or unknown:
            raise ValueError(
                f"channels must be exactly {list(contract.CHANNELS)}; missing {missing}, unknown {unknown}"
            )
        check_channel_samples(
            {name: np.asarray(values, dtype=np.float64) for name, values in channels.items()}
        )
        return channels

    @model_validator(mode="after")
    def _one_form_consistent_index(self) -> LapTelemetry:
        forms = [name for name, given in (("distance_m", self.distance_m is not None),
                                          ("time_s", self.time_s is not None),
                                          ("aligned", self.aligned)) if given]  # fmt: skip
        if len(forms) != 1:
            raise ValueError(
                "give exactly one of distance_m (raw by distance), time_s (raw by time) or aligned=true "
                f"(100 steps), got {forms or 'none'}"
            )
        n = self.n_samples
        if self.aligned:
            if n != contract.N_STEPS:
                raise ValueError(f"an aligned lap has exactly {contract.N_STEPS} values per channel, got {n}")
            return self
        index_name = forms[0]
        index = self.distance_m if index_name == "distance_m" else self.time_s
        check_raw_index(index_name, np.asarray(index, dtype=np.float64), n)
        return self

    @property
    def n_samples(self) -> int:
        return len(next(iter(self.channels.values())))


class CarGap(BaseModel):
    """The car directly ahead or behind at the end of lap L."""

    model_config = ConfigDict(extra="forbid")

    gap_s: FiniteFloat = Field(ge=0.0, le=MAX_GAP_S, description="Time gap to that car, s.")
    pace_delta_s: FiniteFloat = Field(
        ge=-MAX_ABS_PACE_DELTA_S,
        le=MAX_ABS_PACE_DELTA_S,
        description="That car's last lap time minus this car's last lap time, s "
        "(negative: that car is quicker).",
    )


class FuelParams(BaseModel):
    """Fuel model of the race; the gateway's defaults apply when absent."""

    model_config = ConfigDict(extra="forbid")

    start_mass_kg: FiniteFloat = Field(gt=0.0, le=200.0)
    consumption_kg_per_lap: FiniteFloat = Field(gt=0.0, le=20.0)
    sensitivity_s_per_kg: FiniteFloat = Field(ge=0.0, le=0.2)


class PredictRequest(BaseModel):
    """One car: its 5-lap stack, the lap time and number of lap L, fuel model and neighbours."""

    model_config = ConfigDict(extra="forbid")

    car: str | None = Field(
        default=None, max_length=64, description="Free label echoed back (driver, car number)."
    )
    laps: list[LapTelemetry] = Field(
        description=f"Exactly {contract.N_LAP_CONTEXT} laps in the order {list(contract.LAP_SLOTS)}."
    )
    lap_number: int = Field(ge=1, le=200, description="Race lap number of lap L (the latest completed lap).")
    lap_time_s: FiniteFloat = Field(
        ge=LAP_TIME_RANGE_S[0], le=LAP_TIME_RANGE_S[1], description="Measured lap time of lap L, s."
    )
    fuel: FuelParams | None = Field(
        default=None, description="Fuel model of the race; takes precedence over race_laps."
    )
    race_laps: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Scheduled race distance in laps: without `fuel`, the default model for a real race "
        "(110 kg at the start, burnt evenly to the flag, 0.031 s/kg). Neither given: the gateway's "
        "STRATEGIST_DEFAULT_RACE_LAPS.",
    )
    ahead: CarGap | None = Field(
        default=None, description="Car ahead; null = nobody within reach (free air)."
    )
    behind: CarGap | None = Field(default=None, description="Car behind; null = nobody within reach.")

    @model_validator(mode="after")
    def _lap_before_the_flag(self) -> PredictRequest:
        if self.race_laps is not None and self.lap_number >= self.race_laps:
            raise ValueError(
                f"lap_number {self.lap_number} is not before the last lap of a {self.race_laps}-lap race: "
                "there is no next lap to predict"
            )
        return self

    @field_validator("laps")
    @classmethod
    def _five_laps(cls, laps: list[LapTelemetry]) -> list[LapTelemetry]:
        if len(laps) != contract.N_LAP_CONTEXT:
            raise ValueError(
                f"a lap stack holds exactly {contract.N_LAP_CONTEXT} laps in the order "
                f"{list(contract.LAP_SLOTS)}, got {len(laps)}"
            )
        return laps


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cars: list[PredictRequest] = Field(min_length=1, description="Cars to predict, answered in this order.")


# --- responses -------------------------------------------------------------------------------


class Corridor(BaseModel):
    """P10 / P50 / P90 of one lap-time quantity, s."""

    p10_s: float
    p50_s: float
    p90_s: float

    @classmethod
    def of(cls, values: np.ndarray) -> Corridor:
        return cls(p10_s=float(values[0]), p50_s=float(values[1]), p90_s=float(values[2]))


class PacePrediction(BaseModel):
    fuel_corrected: Corridor = Field(
        description="Next lap's fuel-corrected lap time: fuel-corrected time of lap L + model delta."
    )
    expected_lap_time: Corridor = Field(
        description="Next lap's expected measured lap time: fuel-corrected pace plus the fuel effect "
        "of lap L+1's fuel load."
    )
    delta_vs_lap_s: Corridor = Field(description="Model output: change vs the fuel-corrected time of lap L.")


class Scenario(BaseModel):
    pace: PacePrediction
    risk: dict[str, float] = Field(description=f"Probability per class {list(contract.RISK_CLASSES)}.")
    tire_health: float = Field(description="0 (dead) .. 1 (new).")


class Prediction(Scenario):
    """The answer for one car: as raced (with the given neighbours) and its clean-air counterfactual."""

    car: str | None
    next_lap: int
    reference_fc_s: float = Field(description="Fuel-corrected time of lap L, s (the pace reference).")
    fuel_model: FuelParams
    fuel_model_source: str = Field(
        description="Where the fuel model came from: 'request' (fuel), 'race_laps' or 'default'."
    )
    clean_air: Scenario = Field(description="Same stack with no car ahead or behind (free air).")
    traffic_cost_s: float = Field(
        description="P50 fuel-corrected pace with the given neighbours minus in clean air, s."
    )


class ModelInfo(BaseModel):
    name: str
    version: str
    backend: str


class StageTimings(BaseModel):
    preprocess_ms: float
    predict_ms: float
    postprocess_ms: float


class PredictResponse(Prediction):
    request_id: str
    model: ModelInfo
    timing: StageTimings


class BatchPredictResponse(BaseModel):
    request_id: str
    model: ModelInfo
    timing: StageTimings
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, object]]
    request_id: str | None = None
