"""Request and response bodies of the gateway (pydantic). No tensor code here: see preprocess.py.

Validation happens here, before any model work, so a bad request gets a 422 that names the field
(`laps.2.channels`), the sample and the reason. The limits and the per-rule checks are
strategist.limits, shared with the binary body (server/binary_format.py) and the Data Engine.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from strategist import contract, limits

# strict: a JSON string ("104.808") or boolean (true) is never read as a number, nor "3" as an int.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
UNKNOWN_COMPOUND = "UNKNOWN"
TRACK_STATUS_PATTERN = r"^[1-7]+$"
MAX_LAP_NUMBER = 200
LAP_TIME_MATCH_TOL_S = 1e-3  # timing.lap_time_s of lap L vs the request's lap_time_s (ms-resolution feeds)


class TimingRecord(BaseModel):
    """What the timing feed says about one lap of the stack (strategist.data.context.LapTiming).

    Models that read the timing context (a third input, contract.CONTEXT_FEATURES) need it on every
    lap; two-input models ignore it.
    """

    model_config = ConfigDict(extra="forbid")

    lap_number: StrictInt = Field(ge=1, le=MAX_LAP_NUMBER, description="Race lap number of this lap.")
    lap_time_s: FiniteFloat | None = Field(
        default=None,
        ge=limits.LAP_TIME_RANGE_S[0],
        le=limits.LAP_TIME_RANGE_S[1],
        description="Measured lap time, s; null = no usable time (deleted, red-flag or untimed lap).",
    )
    tyre_life: FiniteFloat = Field(
        ge=0.0, le=MAX_LAP_NUMBER, description="Laps on this set of tyres at the end of the lap."
    )
    stint: StrictInt = Field(ge=1, le=MAX_LAP_NUMBER, description="Stint number (1 = from the start).")
    stint_lap: StrictInt = Field(ge=1, le=MAX_LAP_NUMBER, description="Laps into the stint, 1 = the out-lap.")
    compound: str = Field(
        default=UNKNOWN_COMPOUND,
        description=f"Tyre compound: one of {[*contract.COMPOUNDS, UNKNOWN_COMPOUND]}.",
    )
    track_status: str = Field(
        default="1",
        pattern=TRACK_STATUS_PATTERN,
        description="FastF1 TrackStatus digits shown during the lap (1 green, 2 yellow, 4 SC, 5 red, "
        '6 VSC, 7 VSC ending), e.g. "1", "124".',
    )
    pit_in: StrictBool = Field(default=False, description="The car entered the pit lane on this lap.")
    pit_out: StrictBool = Field(default=False, description="The car left the pit lane on this lap.")

    @field_validator("compound")
    @classmethod
    def _known_compound(cls, compound: str) -> str:
        allowed = (*contract.COMPOUNDS, UNKNOWN_COMPOUND)
        if compound not in allowed:
            raise ValueError(f"compound must be one of {list(allowed)}, got {compound!r}")
        return compound


TIMING_FIELDS: tuple[str, ...] = tuple(TimingRecord.model_fields)


def _channels_schema(schema: dict[str, Any]) -> None:
    """The channel rules in the OpenAPI document (the validator below enforces them): the five names,
    each a list of numbers within its physical range (strategist.limits.CHANNEL_LIMITS)."""
    schema.pop("additionalProperties", None)
    schema["properties"] = {
        name: {
            "type": "array",
            "items": {"type": "number", "minimum": low, "maximum": high},
            "minItems": min(limits.MIN_LAP_SAMPLES, contract.N_STEPS),
            "maxItems": limits.MAX_LAP_SAMPLES,
            "description": f"{name}, {contract.CHANNEL_UNITS[name]}"
            + (", whole numbers" if name in contract.DISCRETE_CHANNELS else ""),
        }
        for name, (low, high) in limits.CHANNEL_LIMITS.items()
    }
    schema["required"] = list(contract.CHANNELS)
    schema["additionalProperties"] = False


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
        f"(units {contract.CHANNEL_UNITS}), all of one length: a raw lap "
        f"{limits.MIN_LAP_SAMPLES}..{limits.MAX_LAP_SAMPLES} samples, an aligned lap {contract.N_STEPS}.",
        json_schema_extra=_channels_schema,
    )
    distance_m: list[FiniteFloat] | None = Field(default=None, description="Distance from the lap start, m.")
    time_s: list[FiniteFloat] | None = Field(
        default=None, description="Time from the lap start (or session), s."
    )
    aligned: StrictBool = Field(
        default=False, description="True when `channels` already hold the 100 distance steps."
    )
    timing: TimingRecord | None = Field(
        default=None,
        description="The timing feed's record of this lap; required by models that read the timing "
        "context, ignored by the others.",
    )
    # True on a lap the fast decoders built (server/lap_block.py) after checking every rule below with
    # the same strategist.limits functions. Pydantic runs an "after" model validator again on each
    # lap instance handed to PredictRequest (it does not revalidate the fields, but it does call
    # that validator); the flag lets it skip the second check_raw_index of the same arrays.
    _limits_checked: bool = PrivateAttr(default=False)

    @field_validator("channels")
    @classmethod
    def _known_channels_in_range(cls, channels: dict[str, list[float]]) -> dict[str, list[float]]:
        missing = [c for c in contract.CHANNELS if c not in channels]
        unknown = [c for c in channels if c not in contract.CHANNELS]
        if missing or unknown:
            raise ValueError(
                f"channels must be exactly {list(contract.CHANNELS)}; missing {missing}, unknown {unknown}"
            )
        limits.check_channel_samples(
            {name: np.asarray(values, dtype=np.float64) for name, values in channels.items()}
        )
        return channels

    @model_validator(mode="after")
    def _one_form_consistent_index(self) -> LapTelemetry:
        if self._limits_checked:
            return self
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
            limits.check_aligned_length(n)
            return self
        index_name = forms[0]
        index = self.distance_m if index_name == "distance_m" else self.time_s
        limits.check_raw_index(index_name, np.asarray(index, dtype=np.float64), n)
        return self

    @property
    def n_samples(self) -> int:
        return len(next(iter(self.channels.values())))


class CarGap(BaseModel):
    """The car directly ahead or behind at the end of lap L."""

    model_config = ConfigDict(extra="forbid")

    gap_s: FiniteFloat = Field(ge=0.0, le=limits.MAX_GAP_S, description="Time gap to that car, s.")
    pace_delta_s: FiniteFloat = Field(
        ge=-limits.MAX_REQUEST_PACE_DELTA_S,
        le=limits.MAX_REQUEST_PACE_DELTA_S,
        description="That car's last lap time minus this car's last lap time, s "
        "(negative: that car is quicker); the model sees it clipped to "
        f"+-{contract.MAX_ABS_PACE_DELTA_S:g} s.",
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
        description=f"Exactly {contract.N_LAP_CONTEXT} laps in the order {list(contract.LAP_SLOTS)}.",
        # Stated for the document; the validator below enforces it with a message naming the slots.
        json_schema_extra={"minItems": contract.N_LAP_CONTEXT, "maxItems": contract.N_LAP_CONTEXT},
    )
    lap_number: StrictInt = Field(
        ge=1, le=200, description="Race lap number of lap L (the latest completed lap)."
    )
    lap_time_s: FiniteFloat = Field(
        ge=limits.LAP_TIME_RANGE_S[0],
        le=limits.LAP_TIME_RANGE_S[1],
        description="Measured lap time of lap L, s.",
    )
    fuel: FuelParams | None = Field(
        default=None, description="Fuel model of the race; takes precedence over race_laps."
    )
    race_laps: StrictInt | None = Field(
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
    counterfactual: StrictBool = Field(
        default=True,
        description="Also predict the clean-air counterfactual (same stack, no car ahead or behind): "
        "one more model row. false: `clean_air` and `traffic_cost_s` are null (half the compute).",
    )

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

    @model_validator(mode="after")
    def _timing_agrees_with_lap_l(self) -> PredictRequest:
        # Messages name the lap (laps.<i>.timing) themselves: a model validator's errors sit at the body.
        first = self.laps[0].timing if len(self.laps) == contract.N_LAP_CONTEXT else None
        if first is not None:
            if first.lap_number != self.lap_number:
                raise ValueError(
                    f"laps.0.timing.lap_number {first.lap_number} differs from lap_number "
                    f"{self.lap_number}: laps[0] is lap L"
                )
            if (
                first.lap_time_s is not None
                and abs(first.lap_time_s - self.lap_time_s) > LAP_TIME_MATCH_TOL_S
            ):
                raise ValueError(
                    f"laps.0.timing.lap_time_s {first.lap_time_s:g} differs from lap_time_s "
                    f"{self.lap_time_s:g}: both are the time of lap L"
                )
        for index, lap in enumerate(self.laps):
            if lap.timing is not None and lap.timing.lap_number > self.lap_number:
                raise ValueError(
                    f"laps.{index}.timing.lap_number {lap.timing.lap_number} is after lap L "
                    f"({self.lap_number}): slot {contract.LAP_SLOTS[index]} is an earlier lap or lap L"
                )
        return self


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cars: list[PredictRequest] = Field(
        min_length=1,
        description="Cars to predict, answered in this order; at most the gateway's "
        f"STRATEGIST_MAX_BATCH_CARS (default {limits.MAX_BATCH_CARS}).",
        # The limit is a gateway setting, checked before the cars are parsed (server/decode.py).
        json_schema_extra={"maxItems": limits.MAX_BATCH_CARS},
    )


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
    clean_air: Scenario | None = Field(
        description="Same stack with no car ahead or behind (free air); null when the request said "
        "counterfactual: false."
    )
    traffic_cost_s: float | None = Field(
        description="P50 fuel-corrected pace with the given neighbours minus in clean air, s; null "
        "without the counterfactual."
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
