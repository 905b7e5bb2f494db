"""Bodies of the race-session API (pydantic): a session, one car's completed lap, the field's state.

A posted lap is the telemetry of one lap in a form /predict accepts (server.schemas.LapTelemetry,
without its `timing`) plus the timing feed's row for that lap (LiveTiming). Everything a request
to /predict carries besides (the 5-lap stack, neighbours, stint lap, fuel model) the session derives.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.schemas import (
    MAX_LAP_NUMBER,
    UNKNOWN_COMPOUND,
    Corridor,
    FiniteFloat,
    FuelParams,
    LapTelemetry,
)
from strategist import limits

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RESERVED_SESSION_IDS = frozenset({"sessions", "assets"})  # path segments of the live routes
MAX_SESSION_TIME_S = 6 * 3600.0  # a race is over within its 3-hour window (plus suspension)


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None,
        pattern=SESSION_ID_PATTERN,
        description="Id of the session (letters, digits, _ . -); default: the circuit label plus a "
        "random suffix. Creating an existing id with the same circuit, laps and fuel is a no-op.",
    )
    circuit: str = Field(min_length=1, max_length=64, description="Circuit label shown on the race view.")
    race_laps: int = Field(ge=2, le=MAX_LAP_NUMBER, description="Scheduled race distance in laps.")
    fuel: FuelParams | None = Field(
        default=None,
        description="Fuel model of the race; default: the standard model for race_laps (/predict's).",
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> SessionCreate:
        if self.session_id in RESERVED_SESSION_IDS:
            raise ValueError(f"session_id {self.session_id!r} is reserved ({sorted(RESERVED_SESSION_IDS)})")
        return self


class SessionInfo(BaseModel):
    session_id: str
    circuit: str
    race_laps: int
    fuel: FuelParams | None


class LiveTiming(BaseModel):
    """The timing feed's row of one completed lap (a FastF1 laps row, or a team feed's)."""

    model_config = ConfigDict(extra="forbid")

    lap_time_s: FiniteFloat | None = Field(
        ge=limits.LAP_TIME_RANGE_S[0],
        le=limits.LAP_TIME_RANGE_S[1],
        description="Measured lap time, s; null = no usable time (deleted or untimed lap).",
    )
    lap_end_s: FiniteFloat = Field(
        ge=0.0,
        le=MAX_SESSION_TIME_S,
        description="Session time when the car crossed the line to end the lap, s (FastF1 `Time`); the "
        "crossing order gives the gaps.",
    )
    position: int | None = Field(default=None, ge=1, le=99, description="Race position at the line.")
    # The per-lap rules (ranges, known compound, status digits) are TimingRecord's: the session builds
    # one from this row (server.live.field) before it stores the lap.
    tyre_life: float = Field(description="Laps on this set of tyres at the end of the lap.")
    stint: int = Field(description="Stint number (1 = from the start).")
    compound: str = Field(
        default=UNKNOWN_COMPOUND, description="SOFT, MEDIUM, HARD, INTERMEDIATE, WET or UNKNOWN."
    )
    track_status: str = Field(
        default="1", description='FastF1 TrackStatus digits shown during the lap, e.g. "124".'
    )
    pit_in: bool = False
    pit_out: bool = False


class LivePost(BaseModel):
    """One completed lap of one car, as it arrives."""

    model_config = ConfigDict(extra="forbid")

    car: str = Field(min_length=1, max_length=16, description="Driver code or car number (one per car).")
    lap_number: int = Field(ge=1, le=MAX_LAP_NUMBER)
    timing: LiveTiming
    telemetry: LapTelemetry | None = Field(
        default=None,
        description="Car data of the lap (any form /predict accepts, `timing` left out); null = none "
        "recorded: the lap still counts for the gaps, but no stack can use it.",
    )

    @model_validator(mode="after")
    def _no_nested_timing(self) -> LivePost:
        if self.telemetry is not None and self.telemetry.timing is not None:
            raise ValueError("telemetry.timing: give the lap's timing once, in `timing`")
        return self


# --- answers -----------------------------------------------------------------------------------


class NextLap(BaseModel):
    """The latest prediction made after lap `lap`, for lap `lap` + 1, and how it turned out."""

    lap: int
    expected_lap_time: Corridor
    bad_lap_risk: float = Field(description="1 - P(none): probability of a traffic or overtaken lap.")
    risk: dict[str, float]
    tire_health: float
    traffic_cost_s: float | None  # None only if the prediction was made without the clean-air row
    ahead: str | None = Field(description="Car ahead on track at the line when predicted.")
    behind: str | None
    revision: int = Field(description="1 = made as the lap came in; more: remade as the cars around arrived.")
    actual_s: float | None = Field(default=None, description="Measured time of the predicted lap, once in.")
    inside: bool | None = Field(default=None, description="actual_s within P10-P90 (null until judged).")


class CarLapPoint(BaseModel):
    lap: int
    lap_time_s: float | None


class CarRow(BaseModel):
    car: str
    position: int | None
    laps_done: int
    last_lap: int
    last_lap_time_s: float | None
    last_lap_end_s: float = Field(description="Session time at the line, s (race order: see FieldState).")
    compound: str
    tyre_life: float
    pit_in: bool
    next_lap: NextLap | None = Field(description="Prediction for last_lap + 1 (null: none possible yet).")
    no_prediction: str | None = Field(default=None, description="Why next_lap is null.")
    previous: NextLap | None = Field(description="The prediction for last_lap, judged against it.")
    laps: list[CarLapPoint]
    corridors: list[NextLap] = Field(description="Every lap's latest prediction (the race chart).")


class HitRate(BaseModel):
    judged: int = Field(description="Predicted laps whose actual time has come in.")
    inside: int
    share: float | None = Field(description="inside / judged (null before the first judged lap).")


class FieldState(BaseModel):
    session: SessionInfo
    cars: list[CarRow] = Field(description="Race order: most laps first, then earliest at the line.")
    hit_rate: HitRate
    laps_ingested: int
    predictions_made: int


class LapAccepted(BaseModel):
    session_id: str
    car: str
    lap_number: int
    duplicate: bool = Field(description="True: this exact lap was already in; nothing changed.")
    predicted: list[str] = Field(description="Cars (re)predicted on this lap.")
    row: CarRow


class StoredLap(BaseModel):
    seq: int
    car: str
    lap_number: int
