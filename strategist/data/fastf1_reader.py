"""Read a race laid out like a FastF1 export (real or simulated) into one `Race` object.

    race = read_race("../shared/data/f1-2023/01_sakhir")
    race.laps                       # one row per driver and lap, times in seconds, flags (below)
    race.lap_telemetry("VER", 12)   # RawLap: the car_data samples of that lap
    race.neighbours("VER", 12)      # ((gap s, pace delta s) | None ahead, ... behind) on track
    race.lap_infos("VER")           # LapInfo list for the stack rules

Also `race_from_session(session)` for a loaded `fastf1` Session (optional dependency) and
`load_fastf1_race(year, event)` which fetches one when fastf1 is installed and online.

What the reader derives (documented in docs/data-engine.md):
- A lap's telemetry is the car_data rows with LapStartTime <= SessionTime <= Time of that lap, plus
  one sample interpolated at each boundary (from the neighbouring rows) so the integrated distance
  covers the whole lap.
- Flags per lap: is_pit_in / is_pit_out (PitInTime / PitOutTime set), is_sc / is_vsc / is_red from
  the lap's TrackStatus digits (4 SC, 6/7 VSC, 5 red) and from any track_status.csv period of that
  kind overlapping [LapStartTime, Time] by more than 1 s; is_neutralised = any of the three.
- Gaps: order of crossing the timing line (see strategist.data.tactical): for every lap end the car
  that crossed just before (ahead) and just after (behind), within NO_CAR_GAP_S.
- Races without telemetry/ (4 of the 17 real 2023 races: Melbourne, Montreal, Zandvoort, Mexico
  City) still give laps, flags and gaps; `lap_telemetry` then raises DataError saying the race has
  no telemetry.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategist.contract import CHANNELS, NO_CAR_GAP_S
from strategist.data.engine import RawLap
from strategist.data.fuel import FuelModel
from strategist.data.stack import LapInfo
from strategist.data.tactical import Neighbour
from strategist.errors import DataError, StrategistError

log = logging.getLogger(__name__)

LAPS_REQUIRED = (
    "Time",
    "Driver",
    "DriverNumber",
    "LapTime",
    "LapNumber",
    "Stint",
    "PitOutTime",
    "PitInTime",
    "Compound",
    "TyreLife",
    "LapStartTime",
    "TrackStatus",
    "Position",
)
TELEMETRY_REQUIRED = ("SessionTime", *CHANNELS)
TRACK_STATUS_REQUIRED = ("Time", "Status")
TRUTH_REQUIRED = (
    "Driver",
    "LapNumber",
    "TireHealth",
    "TrafficLoss",
    "Overtaken",
    "NoiseSigma",
    "FuelMass",
    "CleanLapTime",
)
STATUS_OVERLAP_S = 1.0
SC_CODES, VSC_CODES, RED_CODES = frozenset("4"), frozenset("67"), frozenset("5")
_READ_ERRORS = (
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    EOFError,
    OSError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeDecodeError,
)


# --- low-level parsing ------------------------------------------------------------------------


def read_csv_checked(path: Path, required: tuple[str, ...], **kwargs: Any) -> pd.DataFrame:
    """pd.read_csv with DataError naming the file for missing, truncated, corrupt or incomplete files."""
    if not path.exists():
        raise DataError("file not found", file=str(path))
    try:
        frame = pd.read_csv(path, **kwargs)
    except _READ_ERRORS as exc:
        raise DataError(
            f"cannot read (truncated or corrupt?): {type(exc).__name__}: {exc}", file=str(path)
        ) from exc
    check_columns(frame, required, str(path))
    return frame


def check_columns(frame: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=file, field=missing[0])


def to_seconds(values: pd.Series, *, file: str, field: str) -> np.ndarray:
    """Timedelta text ('0 days 01:04:15.961000'), Timedelta or numeric seconds -> float64 seconds (NaN kept)."""
    if pd.api.types.is_timedelta64_dtype(values):
        return values.dt.total_seconds().to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    fast = _parse_fixed_timedelta(values)
    if fast is not None:
        return fast
    try:
        return pd.to_timedelta(values).dt.total_seconds().to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"not a time duration: {exc}", file=file, field=field) from exc


_FIXED_TD = re.compile(r"^\d days \d\d:\d\d:\d\d\.\d{6}$")


def _parse_fixed_timedelta(values: pd.Series) -> np.ndarray | None:
    """Fast path for FastF1's 'D days HH:MM:SS.ffffff' text (one-digit days, no NaN).

    pandas parses timedelta text string by string (~0.1 s per car of telemetry); this text is
    fixed-width, so the digits are read as bytes. None when the format differs: the caller then
    falls back to pandas.
    """
    if len(values) == 0 or values.isna().any():
        return None
    text = values.to_numpy(dtype=str)
    if not (_FIXED_TD.match(text[0]) and _FIXED_TD.match(text[-1])):
        return None
    whole = np.char.str_len(text) == 15  # pandas writes whole seconds without the fraction
    if whole.any():
        text = text.astype("U22")
        text[whole] = np.char.add(text[whole], ".000000")
    try:
        raw = np.asarray(text, dtype="S22")
    except UnicodeEncodeError:
        return None
    if np.char.str_len(raw).min() != 22:
        return None
    d = raw.view(np.uint8).reshape(-1, 22).astype(np.int64) - ord("0")
    digit_cols = [0, 7, 8, 10, 11, 13, 14, 16, 17, 18, 19, 20, 21]
    sep = d[:, [9, 12, 15]] + ord("0")
    if ((d[:, digit_cols] < 0) | (d[:, digit_cols] > 9)).any() or (sep != np.array([58, 58, 46])).any():
        return None  # not all rows have the layout of the first one
    hours = d[:, 7] * 10 + d[:, 8]
    minutes = d[:, 10] * 10 + d[:, 11]
    seconds = d[:, 13] * 10 + d[:, 14]
    micros = d[:, 16:22] @ np.array([100000, 10000, 1000, 100, 10, 1])
    return d[:, 0] * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds + micros / 1e6


def _status_codes(value: object) -> str:
    """TrackStatus cell -> its digit string ('1', '267', ...). FastF1 writes concatenated codes."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") else text


# --- the race ---------------------------------------------------------------------------------


TelemetryLoader = Callable[[str], pd.DataFrame]  # DriverNumber -> raw car_data frame


@dataclass
class Race:
    race_id: str
    track: str
    laps: pd.DataFrame
    track_status: pd.DataFrame
    fuel_model: FuelModel
    total_laps: int
    source: str  # folder or "fastf1:<year> <event>"
    results: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    sim_meta: dict[str, Any] | None = None
    telemetry_loader: TelemetryLoader | None = None
    telemetry_drivers: frozenset[str] = frozenset()  # driver numbers that have a telemetry source
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)
    counters: Counter[str] = field(default_factory=Counter)
    _telemetry_cache: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(
        default_factory=dict, repr=False
    )

    # --- drivers ---
    @property
    def drivers(self) -> list[str]:
        return sorted(self.laps["Driver"].unique())

    @property
    def has_telemetry(self) -> bool:
        return bool(self.telemetry_drivers)

    def __post_init__(self) -> None:
        # Plain-dict lookups: dataset building asks for a lap window and its neighbours per lap.
        laps = self.laps
        self._numbers = dict(zip(laps["Driver"], laps["DriverNumber"], strict=True))
        self._windows = {
            (d, int(n)): (float(a), float(b))
            for d, n, a, b in zip(
                laps["Driver"], laps["LapNumber"], laps["LapStartTime"], laps["Time"], strict=True
            )
        }
        self._gap_rows = (
            {
                (d, int(n)): i
                for i, (d, n) in enumerate(zip(self.gaps["Driver"], self.gaps["LapNumber"], strict=True))
            }
            if len(self.gaps)
            else {}
        )
        cols = ["GapAhead", "PaceDeltaAhead", "GapBehind", "PaceDeltaBehind"]
        self._gap_values = self.gaps[cols].to_numpy(dtype=np.float64) if len(self.gaps) else np.zeros((0, 4))

    def driver_number(self, driver: str) -> str:
        number = self._numbers.get(driver)
        if number is None:
            raise DataError(
                f"driver not in this race (drivers: {self.drivers})", file=self.source, driver=driver
            )
        return str(number)

    def driver_laps(self, driver: str) -> pd.DataFrame:
        rows = self.laps[self.laps["Driver"] == driver]
        if rows.empty:
            raise DataError(
                f"driver not in this race (drivers: {self.drivers})", file=self.source, driver=driver
            )
        return rows

    def driver_has_telemetry(self, driver: str) -> bool:
        return self.driver_number(driver) in self.telemetry_drivers

    def lap_infos(self, driver: str) -> list[LapInfo]:
        has_tel = self.driver_has_telemetry(driver)
        return [
            LapInfo(
                number=int(row.LapNumber),
                stint=int(row.Stint),
                is_pit_in=bool(row.is_pit_in),
                is_pit_out=bool(row.is_pit_out),
                is_neutralised=bool(row.is_neutralised),
                has_telemetry=has_tel,
            )
            for row in self.driver_laps(driver).itertuples()
        ]

    # --- telemetry ---
    def _driver_telemetry(self, number: str, driver: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cached = self._telemetry_cache.get(number)
        if cached is not None:
            return cached
        if self.telemetry_loader is None or number not in self.telemetry_drivers:
            why = "this race has no telemetry" if not self.telemetry_drivers else "no telemetry for this car"
            raise DataError(why, file=self.source, driver=driver)
        frame = self.telemetry_loader(number)
        file = f"{self.source} telemetry of car {number}"
        check_columns(frame, TELEMETRY_REQUIRED, file)
        times = to_seconds(frame["SessionTime"], file=file, field="SessionTime")
        if np.isnan(times).any():
            row = int(np.argmax(np.isnan(times)))
            raise DataError(
                f"SessionTime missing in row {row}", file=file, driver=driver, field="SessionTime"
            )
        channels = {}
        for name in CHANNELS:
            col = frame[name]
            if (
                name == "Brake"
                and not pd.api.types.is_numeric_dtype(col)
                and not pd.api.types.is_bool_dtype(col)
            ):
                col = col.astype(str).str.lower().map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0})
            channels[name] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        self._telemetry_cache = {number: (times, channels)}  # keep one car in memory: races go car by car
        return times, channels

    def driver_telemetry(self, driver: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(SessionTime s [n], channel -> values [n]) of one car for the whole session (validated)."""
        return self._driver_telemetry(self.driver_number(driver), driver)

    def lap_telemetry(self, driver: str, lap: int) -> RawLap:
        """The raw samples of one lap, with a sample interpolated at each lap boundary."""
        number = self.driver_number(driver)
        times, channels = self._driver_telemetry(number, driver)
        where = f"{self.source}, driver {driver}, lap {lap}"
        if (driver, lap) not in self._windows:
            raise DataError("lap not in laps.csv", file=self.source, driver=driver, lap=lap)
        start, end = self._windows[(driver, lap)]
        if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
            raise DataError(
                f"lap window {start} .. {end} s is empty",
                file=self.source,
                driver=driver,
                lap=lap,
                field="LapStartTime",
            )
        inside = np.flatnonzero((times >= start) & (times <= end))
        if inside.size == 0:
            raise DataError(
                f"no telemetry samples between {start:.3f} and {end:.3f} s",
                file=self.source,
                driver=driver,
                lap=lap,
                field="SessionTime",
            )
        idx = inside
        lap_times = times[idx]
        lap_channels = {name: values[idx] for name, values in channels.items()}
        # Interpolate a sample exactly at each boundary from the rows just outside the lap window.
        first, last = idx[0], idx[-1]
        if first > 0 and times[first] > start and times[first - 1] < start:
            lap_times, lap_channels = _add_boundary(
                lap_times, lap_channels, channels, times, first - 1, first, start, front=True
            )
        if last + 1 < times.size and times[last] < end and times[last + 1] > end:
            lap_times, lap_channels = _add_boundary(
                lap_times, lap_channels, channels, times, last, last + 1, end, front=False
            )
        return RawLap(channels=lap_channels, time_s=lap_times - start, where=where)

    # --- on-track neighbours ---
    def neighbours(self, driver: str, lap: int) -> tuple[Neighbour | None, Neighbour | None]:
        """(gap s, pace delta s) of the car ahead and behind on track at the end of `lap`."""
        self.driver_number(driver)  # unknown driver -> DataError naming the race's drivers
        i = self._gap_rows.get((driver, lap))
        if i is None:
            raise DataError("no timing for this lap", file=self.source, driver=driver, lap=lap)
        g = self._gap_values[i]  # [GapAhead, PaceDeltaAhead, GapBehind, PaceDeltaBehind]
        ahead = None if np.isnan(g[0]) else (float(g[0]), float(g[1]))
        behind = None if np.isnan(g[2]) else (float(g[2]), float(g[3]))
        return ahead, behind


def _add_boundary(
    lap_times: np.ndarray,
    lap_channels: dict[str, np.ndarray],
    channels: dict[str, np.ndarray],
    times: np.ndarray,
    i0: int,
    i1: int,
    t: float,
    *,
    front: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    w = (t - times[i0]) / (times[i1] - times[i0])
    new_channels = {}
    for name, values in channels.items():
        # discrete channels take the value in force at t (the earlier row); continuous ones interpolate
        v = values[i0] if name in ("Brake", "nGear") else values[i0] + w * (values[i1] - values[i0])
        new_channels[name] = np.concatenate([[v], lap_channels[name]] if front else [lap_channels[name], [v]])
    new_times = np.concatenate([[t], lap_times] if front else [lap_times, [t]])
    return new_times, new_channels


# --- building the normalised tables -----------------------------------------------------------


def normalise_laps(raw: pd.DataFrame, status: pd.DataFrame, *, file: str) -> pd.DataFrame:
    """FastF1 laps -> one row per (Driver, LapNumber), times in s, with pit and flag columns."""
    check_columns(raw, LAPS_REQUIRED, file)
    laps = pd.DataFrame(
        {
            "Driver": raw["Driver"].astype(str).to_numpy(),
            "DriverNumber": raw["DriverNumber"]
            .map(lambda v: str(int(v)) if isinstance(v, float) else str(v))
            .to_numpy(),
        }
    )
    for col in ("Time", "LapTime", "LapStartTime", "PitInTime", "PitOutTime"):
        laps[col] = to_seconds(raw[col], file=file, field=col)
    for col in ("LapNumber", "Stint", "TyreLife", "Position"):
        laps[col] = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=np.float64)
    laps["Compound"] = raw["Compound"].fillna("UNKNOWN").astype(str).str.upper().to_numpy()
    laps["Team"] = raw["Team"].astype(str).to_numpy() if "Team" in raw.columns else ""
    laps["TrackStatus"] = [_status_codes(v) for v in raw["TrackStatus"]]

    for col in ("LapNumber", "Time", "LapStartTime"):
        bad = ~np.isfinite(laps[col].to_numpy())
        if bad.any():
            r = laps[bad].iloc[0]
            raise DataError(
                f"{int(bad.sum())} row(s) without {col}",
                file=file,
                driver=r["Driver"],
                lap=None if col == "LapNumber" else int(r["LapNumber"]),
                field=col,
            )
    # A missing Stint (rare in FastF1) is the previous lap's stint: stints only change at pit stops.
    laps = laps.sort_values(["Driver", "LapNumber"], kind="stable").reset_index(drop=True)
    laps["Stint"] = laps.groupby("Driver")["Stint"].ffill().fillna(1.0)
    laps["LapNumber"] = laps["LapNumber"].astype(np.int64)
    laps["Stint"] = laps["Stint"].astype(np.int64)
    dup = laps.duplicated(["Driver", "LapNumber"])
    if dup.any():
        r = laps[dup].iloc[0]
        raise DataError(
            "lap appears twice", file=file, driver=r["Driver"], lap=int(r["LapNumber"]), field="LapNumber"
        )
    backwards = laps["Time"].to_numpy() < laps["LapStartTime"].to_numpy()
    if backwards.any():
        r = laps[backwards].iloc[0]
        raise DataError(
            f"lap ends ({r['Time']:.3f} s) before it starts ({r['LapStartTime']:.3f} s)",
            file=file,
            driver=r["Driver"],
            lap=int(r["LapNumber"]),
            field="Time",
        )

    laps["is_pit_in"] = np.isfinite(laps["PitInTime"].to_numpy())
    laps["is_pit_out"] = np.isfinite(laps["PitOutTime"].to_numpy())
    codes = laps["TrackStatus"]
    for flag, kinds in (("is_sc", SC_CODES), ("is_vsc", VSC_CODES), ("is_red", RED_CODES)):
        from_laps = codes.map(lambda s, k=kinds: any(c in k for c in s)).to_numpy(dtype=bool)
        laps[flag] = from_laps | _overlaps_status(laps, status, kinds)
    laps["is_neutralised"] = laps["is_sc"] | laps["is_vsc"] | laps["is_red"]
    return laps


def _overlaps_status(laps: pd.DataFrame, status: pd.DataFrame, kinds: frozenset[str]) -> np.ndarray:
    """True where a track-status period of one of `kinds` overlaps [LapStartTime, Time] by more
    than STATUS_OVERLAP_S (status messages and line crossings are not timed to the same clock
    tick; a period that starts as the car crosses the line belongs to the next lap)."""
    out = np.zeros(len(laps), dtype=bool)
    if status.empty:
        return out
    t = status["Time"].to_numpy()
    ends = np.append(t[1:], np.inf)
    for start, end, code in zip(t, ends, status["Status"], strict=True):
        if code in kinds:
            out |= (laps["LapStartTime"].to_numpy() < end - STATUS_OVERLAP_S) & (
                laps["Time"].to_numpy() > start + STATUS_OVERLAP_S
            )
    return out


def normalise_track_status(raw: pd.DataFrame | None, *, file: str) -> pd.DataFrame:
    if raw is None or raw.empty:
        return pd.DataFrame({"Time": np.array([], dtype=np.float64), "Status": np.array([], dtype=str)})
    check_columns(raw, TRACK_STATUS_REQUIRED, file)
    out = pd.DataFrame(
        {
            "Time": to_seconds(raw["Time"], file=file, field="Time"),
            "Status": [_status_codes(v) for v in raw["Status"]],
        }
    )
    if "Message" in raw.columns:
        out["Message"] = raw["Message"].astype(str).to_numpy()
    return out.sort_values("Time", kind="stable").reset_index(drop=True)


def compute_gaps(laps: pd.DataFrame) -> pd.DataFrame:
    """For every (Driver, LapNumber): the car ahead / behind at the line, gap s and pace delta s.

    Crossing order at the timing line: sort all lap ends by Time (ties by Position); the previous
    crossing by another car is the car ahead on track, the next one the car behind. Beyond
    NO_CAR_GAP_S there is no car (NaN). Pace delta = their LapTime of the lap they just completed
    minus ours (NaN when either is unknown).
    """
    order = laps.sort_values(["Time", "Position"], kind="stable", na_position="last")
    t = order["Time"].to_numpy()
    drivers = order["Driver"].to_numpy()
    lap_time = order["LapTime"].to_numpy()
    n = len(order)
    result = {k: np.full(n, np.nan) for k in ("GapAhead", "PaceDeltaAhead", "GapBehind", "PaceDeltaBehind")}
    ahead_driver = np.full(n, "", dtype=object)
    behind_driver = np.full(n, "", dtype=object)
    for i in range(n):
        j = i - 1
        while j >= 0 and drivers[j] == drivers[i]:  # only possible for absurdly short laps
            j -= 1
        if j >= 0 and t[i] - t[j] < NO_CAR_GAP_S:
            result["GapAhead"][i] = t[i] - t[j]
            result["PaceDeltaAhead"][i] = lap_time[j] - lap_time[i]
            ahead_driver[i] = drivers[j]
        k = i + 1
        while k < n and drivers[k] == drivers[i]:
            k += 1
        if k < n and t[k] - t[i] < NO_CAR_GAP_S:
            result["GapBehind"][i] = t[k] - t[i]
            result["PaceDeltaBehind"][i] = lap_time[k] - lap_time[i]
            behind_driver[i] = drivers[k]
    gaps = pd.DataFrame(
        {
            "Driver": drivers,
            "LapNumber": order["LapNumber"].to_numpy(),
            "AheadDriver": ahead_driver,
            "BehindDriver": behind_driver,
            **result,
        }
    )
    return gaps.sort_values(["Driver", "LapNumber"], kind="stable").reset_index(drop=True)


def _race_info(path: Path) -> dict[str, str]:
    """race_info.csv as FastF1 writes it (key,value rows) or as one row with named columns."""
    if not path.exists():
        return {}
    frame = read_csv_checked(path, ())
    if "EventName" in frame.columns or "Location" in frame.columns:
        return {str(k): str(v) for k, v in frame.iloc[0].items()} if len(frame) else {}
    raw = read_csv_checked(path, (), header=None, index_col=0)
    return {str(k): str(v) for k, v in raw.iloc[:, 0].items()}


def build_race(
    race_id: str,
    laps_raw: pd.DataFrame,
    *,
    source: str,
    track_status_raw: pd.DataFrame | None = None,
    results: pd.DataFrame | None = None,
    race_info: dict[str, str] | None = None,
    truth: pd.DataFrame | None = None,
    sim_meta: dict[str, Any] | None = None,
    telemetry_loader: TelemetryLoader | None = None,
    telemetry_drivers: frozenset[str] = frozenset(),
) -> Race:
    """Assemble a Race from raw FastF1-shaped frames (shared by the folder and the live-session paths)."""
    status = normalise_track_status(track_status_raw, file=f"{source}/track_status.csv")
    laps = normalise_laps(laps_raw, status, file=f"{source}/laps.csv")
    if laps.empty:
        raise DataError("no laps", file=f"{source}/laps.csv")
    info = race_info or {}
    meta = sim_meta or {}
    track = str(meta.get("track") or info.get("Track") or info.get("Location") or race_id)
    total_laps = int(meta.get("total_laps") or laps["LapNumber"].max())
    if "fuel_model" in meta:
        fuel = FuelModel.from_mapping(meta["fuel_model"], file=f"{source}/sim_meta.json")
    else:
        fuel = FuelModel.for_race(total_laps)
    race = Race(
        race_id=race_id,
        track=track,
        laps=laps,
        track_status=status,
        fuel_model=fuel,
        total_laps=total_laps,
        source=source,
        results=results,
        truth=truth,
        sim_meta=sim_meta,
        telemetry_loader=telemetry_loader,
        telemetry_drivers=telemetry_drivers,
        gaps=compute_gaps(laps),
    )
    race.counters["laps"] = len(laps)
    race.counters["laps_without_laptime"] = int((~np.isfinite(laps["LapTime"].to_numpy())).sum())
    return race


def _telemetry_path(directory: Path, number: str) -> Path | None:
    for name in (f"{number}_telemetry.csv.gz", f"{number}_telemetry.csv"):
        if (directory / name).exists():
            return directory / name
    return None


def read_race(race_dir: str | Path) -> Race:
    """Read one race folder (FastF1 export layout, docs/data-format.md)."""
    race_dir = Path(race_dir)
    if not race_dir.is_dir():
        raise DataError("race folder not found", file=str(race_dir))
    laps_raw = read_csv_checked(race_dir / "laps.csv", LAPS_REQUIRED, dtype={"TrackStatus": str})
    status_path = race_dir / "track_status.csv"
    status_raw = (
        read_csv_checked(status_path, TRACK_STATUS_REQUIRED, dtype={"Status": str})
        if status_path.exists()
        else None
    )
    if status_raw is None:
        log.warning("%s: no track_status.csv, SC/VSC/red flags come from laps.csv TrackStatus only", race_dir)
    results_path = race_dir / "results.csv"
    results = read_csv_checked(results_path, ()) if results_path.exists() else None
    truth_path = race_dir / "truth.csv"
    truth = read_csv_checked(truth_path, TRUTH_REQUIRED) if truth_path.exists() else None
    meta_path = race_dir / "sim_meta.json"
    sim_meta = None
    if meta_path.exists():
        try:
            sim_meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON: {exc}", file=str(meta_path)) from exc

    tel_dir = race_dir / "telemetry"
    numbers = laps_raw["DriverNumber"].map(lambda v: str(int(v)) if isinstance(v, float) else str(v)).unique()
    paths = {str(n): p for n in numbers if (p := _telemetry_path(tel_dir, str(n))) is not None}
    if not paths:
        log.info("%s: no telemetry/ files: laps, flags and gaps only, no telemetry stacks", race_dir)

    wanted = set(TELEMETRY_REQUIRED)

    def load(number: str) -> pd.DataFrame:
        # Only the columns the engine uses: parsing Date/Time/Source text would double the cost.
        return read_csv_checked(paths[number], TELEMETRY_REQUIRED, usecols=lambda c: c in wanted)

    return build_race(
        race_dir.name,
        laps_raw,
        source=str(race_dir),
        track_status_raw=status_raw,
        results=results,
        race_info=_race_info(race_dir / "race_info.csv"),
        truth=truth,
        sim_meta=sim_meta,
        telemetry_loader=load,
        telemetry_drivers=frozenset(paths),
    )


def race_from_session(session: Any, race_id: str | None = None) -> Race:
    """A Race from a loaded fastf1 Session (`session.load(laps=True, telemetry=True)` done by the caller)."""
    event = getattr(session, "event", {}) or {}
    name = race_id or str(event.get("EventName", "fastf1-session")).lower().replace(" ", "-")
    car_data = getattr(session, "car_data", {}) or {}

    def load(number: str) -> pd.DataFrame:
        return pd.DataFrame(car_data[number])

    return build_race(
        name,
        pd.DataFrame(session.laps),
        source=f"fastf1:{name}",
        track_status_raw=pd.DataFrame(session.track_status)
        if getattr(session, "track_status", None) is not None
        else None,
        results=pd.DataFrame(session.results) if getattr(session, "results", None) is not None else None,
        race_info={
            "EventName": str(event.get("EventName", name)),
            "Location": str(event.get("Location", name)),
        },
        telemetry_loader=load,
        telemetry_drivers=frozenset(str(k) for k in car_data),
    )


def load_fastf1_race(year: int, event: str | int, session_name: str = "R") -> Race:
    """Fetch a race through the fastf1 package (optional dependency, needs network or its cache)."""
    try:
        import fastf1  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise StrategistError(
            "the fastf1 package is not installed: pip install 'virtual-strategist[fastf1]'"
        ) from exc
    session = fastf1.get_session(year, event, session_name)
    try:
        session.load(laps=True, telemetry=True, weather=False, messages=False)
    except Exception as exc:  # fastf1 raises many kinds on network failure
        raise StrategistError(f"fastf1 could not load {year} {event} {session_name}: {exc}") from exc
    return race_from_session(session, race_id=f"{year}_{event}".lower().replace(" ", "-"))
