"""The reader and dataset builder on the real 2023 FastF1 exports (skipped when the data is absent)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from strategist.contract import NO_CAR_GAP_S
from strategist.data.align import integrate_distance
from strategist.data.dataset import build_dataset
from strategist.data.dataset_format import load_arrays
from strategist.data.engine import align_raw_lap
from strategist.data.fastf1_reader import race_from_session, read_race

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def sakhir(real_races_dir):
    return read_race(real_races_dir / "01_sakhir")


def test_crossing_order_matches_position_order(sakhir):
    laps = sakhir.laps.dropna(subset=["Position"])
    for _, lap in laps.groupby("LapNumber"):
        by_time = lap.sort_values("Time")["Driver"].tolist()
        by_position = lap.sort_values("Position")["Driver"].tolist()
        assert by_time == by_position


def test_on_track_gaps_agree_with_classification(sakhir):
    laps = sakhir.laps.set_index(["Driver", "LapNumber"])
    gaps = sakhir.gaps.set_index(["Driver", "LapNumber"])
    position_ahead = {(int(lap), int(p)): d for (d, lap), p in laps["Position"].dropna().items()}
    checked = same_lap = 0
    for (driver, lap), row in gaps.iterrows():
        pos = laps.loc[(driver, lap), "Position"]
        if not np.isfinite(pos) or pos == 1:
            continue
        rival = position_ahead.get((int(lap), int(pos) - 1))
        if rival is None:
            continue
        classified_gap = laps.loc[(driver, lap), "Time"] - laps.loc[(rival, lap), "Time"]
        if classified_gap >= NO_CAR_GAP_S:
            continue
        checked += 1
        # the car ahead on the road is never further away than the classified car ahead ...
        assert row["GapAhead"] <= classified_gap + 1e-9
        # ... and when it is exactly as far, it is that car (not a lapped one in between)
        if row["AheadDriver"] == rival:
            same_lap += 1
            assert row["GapAhead"] == pytest.approx(classified_gap)
            assert row["PaceDeltaAhead"] == pytest.approx(
                laps.loc[(rival, lap), "LapTime"] - laps.loc[(driver, lap), "LapTime"], nan_ok=True
            )
    assert checked > 500 and same_lap > 0.8 * checked


def test_flags_on_sakhir(sakhir):
    laps = sakhir.laps.set_index(["Driver", "LapNumber"])
    assert laps.loc[("ALB", 41), "is_vsc"] and not laps.loc[("ALB", 30), "is_neutralised"]
    # two cars retired in the pits: in-laps without a matching out-lap
    assert laps["is_pit_in"].sum() - 2 == laps["is_pit_out"].sum() > 30
    assert not laps["is_sc"].any() and not laps["is_red"].any()


def test_real_laps_align_to_plausible_tensors(sakhir):
    lengths = []
    for lap in (2, 10, 30, 56):
        raw = sakhir.lap_telemetry("VER", lap)
        lengths.append(integrate_distance(np.asarray(raw.channels["Speed"]), np.asarray(raw.time_s))[-1])
        out = align_raw_lap(raw)
        assert 60 < out[:, 0].min() and out[:, 0].max() < 345
        assert out[:, 1].max() <= 100 and set(np.unique(out[:, 2])) <= {0.0, 1.0}
        assert set(np.unique(out[:, 4])) <= set(range(1, 9))
    # official length 5,412 m; speed integration comes out 1-2 % short
    assert all(5250 < x < 5450 for x in lengths)


def test_race_without_telemetry(real_races_dir):
    race = read_race(real_races_dir / "08_montreal")
    assert not race.has_telemetry and len(race.gaps) == len(race.laps)
    assert race.laps["is_sc"].any()


def test_red_flag_race_is_flagged(real_races_dir):
    race = read_race(real_races_dir / "03_melbourne")
    assert race.laps["is_red"].any()


def test_live_session_path_with_a_session_like_object(real_races_dir, sakhir):
    """race_from_session takes what fastf1.Session offers: Timedelta columns and car_data per car."""
    folder = real_races_dir / "01_sakhir"
    laps = pd.read_csv(folder / "laps.csv", index_col=0, dtype={"TrackStatus": str})
    for col in ("Time", "LapTime", "PitOutTime", "PitInTime", "LapStartTime"):
        laps[col] = pd.to_timedelta(laps[col])
    status = pd.read_csv(folder / "track_status.csv", index_col=0, dtype={"Status": str})
    status["Time"] = pd.to_timedelta(status["Time"])
    car = pd.read_csv(folder / "telemetry" / "1_telemetry.csv.gz", index_col=0)
    car["SessionTime"] = pd.to_timedelta(car["SessionTime"])
    session = SimpleNamespace(
        laps=laps,
        track_status=status,
        results=None,
        car_data={"1": car},
        event={"EventName": "Bahrain Grand Prix", "Location": "Sakhir"},
    )
    race = race_from_session(session)
    assert race.race_id == "bahrain-grand-prix" and race.track == "Sakhir"
    assert race.driver_has_telemetry("VER") and not race.driver_has_telemetry("HAM")
    np.testing.assert_allclose(
        align_raw_lap(race.lap_telemetry("VER", 12)), align_raw_lap(sakhir.lap_telemetry("VER", 12))
    )
    pd.testing.assert_frame_equal(race.gaps, sakhir.gaps)


@pytest.mark.slow
def test_build_dataset_from_sakhir(real_races_dir, tmp_path):
    manifest = build_dataset([real_races_dir / "01_sakhir"], tmp_path / "ds", progress=False)
    arrays, _ = load_arrays(
        tmp_path / "ds", fields=["telemetry", "tactical", "risk", "regime", "tire_health"]
    )
    n = manifest["n_samples"]
    assert n > 1000 and arrays["telemetry"].shape == (n, 5, 100, 5) and arrays["tactical"].shape == (n, 2, 2)
    assert manifest["skipped"] == {"samples_without_lap_time": 1}  # one lap of the race has no LapTime
    assert set(np.unique(arrays["risk"])) == {0, 1, 2}
    assert ((arrays["tire_health"] >= 0) & (arrays["tire_health"] <= 1)).all()
