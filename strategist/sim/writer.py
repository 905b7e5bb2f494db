"""Write a simulated race in the FastF1 export layout of docs/data-format.md, byte-for-byte reproducible
(gzip headers carry no time stamp or file name; JSON keys are sorted; no wall-clock values)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from strategist.data.fastf1_reader import TRUTH_REQUIRED
from strategist.sim.laptime import RaceSetup
from strategist.sim.race import SC, VSC, RaceRecord
from strategist.sim.telemetry import CarSamples, LapTrace

POINTS = (25, 18, 15, 12, 10, 8, 6, 4, 2, 1)
LAPS_COLUMNS = (
    "Time Driver DriverNumber LapTime LapNumber Stint PitOutTime PitInTime Sector1Time Sector2Time "
    "Sector3Time Sector1SessionTime Sector2SessionTime Sector3SessionTime SpeedI1 SpeedI2 SpeedFL SpeedST "
    "IsPersonalBest Compound TyreLife FreshTyre Team LapStartTime LapStartDate TrackStatus Position "
    "Deleted DeletedReason FastF1Generated IsAccurate"
).split()
TELEMETRY_COLUMNS = (
    "Date",
    "RPM",
    "Speed",
    "nGear",
    "Throttle",
    "Brake",
    "DRS",
    "Source",
    "Time",
    "SessionTime",
)
# truth.csv is read back by the Data Engine: one definition of its columns, the reader's.
TRUTH_COLUMNS = TRUTH_REQUIRED


def timedelta_text(seconds: float) -> str:
    """pandas' text for a Timedelta at ms resolution: '0 days 01:04:15.961000' ('' for NaN)."""
    if seconds is None or not np.isfinite(seconds):
        return ""
    total_ms = int(round(seconds * 1000.0))
    days, rem = divmod(total_ms, 86_400_000)
    h, rem = divmod(rem, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    frac = f".{ms:03d}000" if ms else ""
    return f"{days} days {h:02d}:{m:02d}:{s:02d}{frac}"


def _timedelta_texts(ms: np.ndarray) -> list[str]:
    """Vectorised timedelta_text for integer milliseconds (all < 1 day)."""
    h, rem = np.divmod(ms, 3_600_000)
    m, rem = np.divmod(rem, 60_000)
    s, msec = np.divmod(rem, 1000)
    return [
        f"0 days {a:02d}:{b:02d}:{c:02d}.{d:03d}000" if d else f"0 days {a:02d}:{b:02d}:{c:02d}"
        for a, b, c, d in zip(h.tolist(), m.tolist(), s.tolist(), msec.tolist(), strict=True)
    ]


def _date_texts(base: dt.datetime, ms: np.ndarray) -> list[str]:
    base_ms = int(base.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    out = []
    for v in (ms + base_ms).tolist():
        d = dt.datetime.fromtimestamp(v // 1000, tz=dt.timezone.utc)
        out.append(f"{d:%Y-%m-%d %H:%M:%S}.{v % 1000:03d}")
    return out


def write_gzip_text(path: Path, text: str, level: int = 5) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    path.write_bytes(raw.getvalue())


def write_telemetry(path: Path, samples: CarSamples, session_date: dt.datetime) -> None:
    ms = np.round(samples.session_s * 1000.0).astype(np.int64)
    td = _timedelta_texts(ms)
    dates = _date_texts(session_date, ms)
    brake = np.where(samples.brake, "True", "False").tolist()
    lines = [",Date,RPM,Speed,nGear,Throttle,Brake,DRS,Source,Time,SessionTime"]
    for k, (d, r, v, g, t, b, z, tt) in enumerate(
        zip(
            dates,
            samples.rpm.tolist(),
            samples.speed.tolist(),
            samples.gear.tolist(),
            samples.throttle.tolist(),
            brake,
            samples.drs.tolist(),
            td,
            strict=True,
        )
    ):
        lines.append(f"{k},{d},{r},{v},{g},{t},{b},{z},car,{tt},{tt}")
    write_gzip_text(path, "\n".join(lines) + "\n")


def _lap_track_status(rec: RaceRecord, li: int, i: int, phases: list[tuple[float, float, int]]) -> str:
    """FastF1-style TrackStatus of one lap: the status codes seen during it, in order ('1', '4', '41')."""
    start, end = rec.start[li, i], rec.cross[li, i]
    codes = ""
    for t0, t1, kind in phases:
        if t0 < end and t1 > start:
            code = "4" if kind == SC else "67" if kind == VSC else ""
            if start < t0:
                codes += "1"
            codes += code
            if end > t1:
                codes += "1"
    return codes or "1"


def status_phases(setup: RaceSetup, rec: RaceRecord) -> list[tuple[float, float, int]]:
    """(deploy time, clear time, SC/VSC) in session time: from the leader starting the first
    neutralised lap to the leader finishing the last one."""
    phases = []
    for first, n, kind in setup.sc_events:
        li0, li1 = first - 1, first - 1 + n - 1
        if li1 >= len(rec.start) or np.all(np.isnan(rec.start[li0])) or np.all(np.isnan(rec.cross[li1])):
            continue
        phases.append(
            (
                float(np.nanmin(rec.start[li0])) + 0.5,
                float(np.nanmin(rec.cross[li1])),
                SC if kind == "SC" else VSC,
            )
        )
    return phases


def write_race(
    folder: Path,
    *,
    setup: RaceSetup,
    rec: RaceRecord,
    traces: dict[tuple[int, int], LapTrace],
    samples: dict[int, CarSamples],
    meta: dict,
    round_number: int,
    session_date: dt.datetime,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "telemetry").mkdir(exist_ok=True)
    phases = status_phases(setup, rec)
    cars = setup.entries
    n_laps, n = rec.cross.shape

    rows, truth = [], []
    for i, e in enumerate(cars):
        best = np.inf
        start_offset = 3 if e.start_compound == "SOFT" else 0
        for li in range(n_laps):
            if np.isnan(rec.cross[li, i]):
                continue
            tr = traces[(li, i)]
            start, cross = rec.start[li, i], rec.cross[li, i]
            stint = int(rec.stint[li, i])
            tyre_life = int(rec.tyre_life[li, i]) + (start_offset if stint == 1 else 0)
            status = _lap_track_status(rec, li, i, phases)
            pit = bool(rec.pit_in[li, i] or rec.pit_out[li, i])
            accurate = li > 0 and not pit and status == "1"
            lap_time = cross - start
            personal_best = accurate and lap_time < best
            if personal_best:
                best = lap_time
            s1, s2, s3 = tr.sector_s
            rows.append(
                {
                    "Time": timedelta_text(cross),
                    "Driver": e.abbreviation,
                    "DriverNumber": e.number,
                    "LapTime": timedelta_text(lap_time),
                    "LapNumber": float(li + 1),
                    "Stint": float(stint),
                    "PitOutTime": timedelta_text(start + tr.pit_out_offset_s) if rec.pit_out[li, i] else "",
                    "PitInTime": timedelta_text(start + tr.pit_in_offset_s) if rec.pit_in[li, i] else "",
                    "Sector1Time": timedelta_text(s1),
                    "Sector2Time": timedelta_text(s2),
                    "Sector3Time": timedelta_text(s3),
                    "Sector1SessionTime": timedelta_text(start + s1),
                    "Sector2SessionTime": timedelta_text(start + s1 + s2),
                    "Sector3SessionTime": timedelta_text(cross),
                    "SpeedI1": tr.speed_traps[0],
                    "SpeedI2": tr.speed_traps[1],
                    "SpeedFL": tr.speed_traps[2],
                    "SpeedST": tr.speed_traps[3],
                    "IsPersonalBest": personal_best,
                    "Compound": rec.compound[li, i],
                    "TyreLife": float(tyre_life),
                    "FreshTyre": not (stint == 1 and start_offset > 0),
                    "Team": e.team,
                    "LapStartTime": timedelta_text(start),
                    "LapStartDate": _date_texts(session_date, np.array([int(round(start * 1000))]))[0],
                    "TrackStatus": status,
                    "Position": float(rec.position[li, i]),
                    "Deleted": False,
                    "DeletedReason": "",
                    "FastF1Generated": False,
                    "IsAccurate": accurate,
                }
            )
            truth.append(
                {
                    "Driver": e.abbreviation,
                    "LapNumber": li + 1,
                    "TireHealth": round(float(rec.health[li, i]), 4),
                    "TrafficLoss": round(float(rec.traffic_loss[li, i]), 4),
                    "Overtaken": bool(rec.overtaken[li, i]),
                    "NoiseSigma": round(e.noise_sigma_s, 4),
                    "FuelMass": round(float(rec.fuel_kg[li, i]), 3),
                    "CleanLapTime": round(float(rec.clean_time[li, i]), 3),
                }
            )
    pd.DataFrame(rows, columns=LAPS_COLUMNS).to_csv(folder / "laps.csv")
    pd.DataFrame(truth, columns=TRUTH_COLUMNS).to_csv(folder / "truth.csv", index=False)
    _write_results(folder, setup, rec)
    _write_track_status(folder, phases)
    _write_race_info(folder, setup, round_number, session_date, rec)
    for i, e in enumerate(cars):
        if i in samples:
            write_telemetry(folder / "telemetry" / f"{e.number}_telemetry.csv.gz", samples[i], session_date)
    (folder / "sim_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _write_results(folder: Path, setup: RaceSetup, rec: RaceRecord) -> None:
    cars = setup.entries
    laps_done = rec.laps_completed
    last_cross = np.array(
        [rec.cross[laps_done[i] - 1, i] if laps_done[i] > 0 else np.inf for i in range(len(cars))]
    )
    finished = np.array([e.retire_lap is None for e in cars])
    # classification: finishers by laps then time, retirements by laps completed
    order = sorted(range(len(cars)), key=lambda i: (not finished[i], -laps_done[i], last_cross[i]))
    winner = order[0]
    max_laps = laps_done[winner]
    rows = []
    for pos, i in enumerate(order, start=1):
        e = cars[i]
        if finished[i]:
            down = max_laps - laps_done[i]
            status = "Finished" if down == 0 else f"+{down} Lap" + ("s" if down > 1 else "")
            classified = str(pos)
            if i == winner:
                time = timedelta_text(last_cross[i] - rec.race_start_s)
            elif down == 0:
                time = timedelta_text(last_cross[i] - last_cross[winner])
            else:
                time = ""
        else:
            status, classified, time = e.retire_reason, "R", ""
        rows.append(
            {
                "DriverNumber": e.number,
                "BroadcastName": f"{e.first_name[0]} {e.last_name.upper()}",
                "Abbreviation": e.abbreviation,
                "DriverId": e.last_name.lower(),
                "TeamName": e.team,
                "TeamColor": e.team_color,
                "TeamId": e.team.lower().replace(" ", "_"),
                "FirstName": e.first_name,
                "LastName": e.last_name,
                "FullName": f"{e.first_name} {e.last_name}",
                "HeadshotUrl": "",
                "CountryCode": "",
                "Position": float(pos),
                "ClassifiedPosition": classified,
                "GridPosition": float(e.grid),
                "Q1": "",
                "Q2": "",
                "Q3": "",
                "Time": time,
                "Status": status,
                "Points": float(POINTS[pos - 1]) if pos <= len(POINTS) and finished[i] else 0.0,
            }
        )
    df = pd.DataFrame(rows)
    df.index = df["DriverNumber"].to_numpy()
    df.to_csv(folder / "results.csv")


def _write_track_status(folder: Path, phases: list[tuple[float, float, int]]) -> None:
    rows = [{"Time": timedelta_text(0.0), "Status": 1, "Message": "AllClear"}]
    for t0, t1, kind in phases:
        if kind == SC:
            rows.append({"Time": timedelta_text(t0), "Status": 4, "Message": "SCDeployed"})
        else:
            rows.append({"Time": timedelta_text(t0), "Status": 6, "Message": "VSCDeployed"})
            rows.append({"Time": timedelta_text(max(t0, t1 - 10.0)), "Status": 7, "Message": "VSCEnding"})
        rows.append({"Time": timedelta_text(t1), "Status": 1, "Message": "AllClear"})
    pd.DataFrame(rows, columns=["Time", "Status", "Message"]).to_csv(folder / "track_status.csv")


def _write_race_info(
    folder: Path, setup: RaceSetup, round_number: int, session_date: dt.datetime, rec: RaceRecord
) -> None:
    race_date = session_date + dt.timedelta(seconds=rec.race_start_s)
    info = {
        "RoundNumber": round_number,
        "Country": "Simulated",
        "Location": setup.track,
        "OfficialEventName": f"SIMULATED {setup.track.upper()} GRAND PRIX {setup.era.name}",
        "EventDate": f"{session_date:%Y-%m-%d} 00:00:00",
        "EventName": f"{setup.track} Grand Prix (simulated)",
        "EventFormat": "conventional",
        "Session5": "Race",
        "Session5Date": f"{race_date:%Y-%m-%d %H:%M:%S}+00:00",
        "Session5DateUtc": f"{race_date:%Y-%m-%d %H:%M:%S}",
        "F1ApiSupport": False,
        "Track": setup.track,
        "Era": setup.era.name,
        "Simulated": True,
    }
    pd.Series(info, name=round_number).to_csv(folder / "race_info.csv")
