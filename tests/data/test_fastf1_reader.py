"""The race reader: on a synthetic race folder with known answers and its bad-input errors, then on
the real 2023 FastF1 exports (marked realdata; skipped when the data is absent), with the dataset
builder on one real race."""

from __future__ import annotations

import gzip
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers.race_folder import LAP_LENGTH_M, VSC_LAP, write_synthetic_race

from strategist.contract import NO_CAR_GAP_S
from strategist.data.align import integrate_distance
from strategist.data.dataset import build_dataset
from strategist.data.dataset_format import load_arrays
from strategist.data.engine import align_raw_lap
from strategist.data.fastf1_reader import race_from_session, read_race
from strategist.data.labels import label_table
from strategist.errors import DataError


@pytest.fixture(scope="module")
def race_dir(tmp_path_factory):
    return write_synthetic_race(tmp_path_factory.mktemp("races") / "synthetic", n_laps=8)


@pytest.fixture()
def copy_race(race_dir, tmp_path):
    def make():
        dst = tmp_path / "race"
        shutil.copytree(race_dir, dst)
        return dst

    return make


def test_laps_flags_and_lap_telemetry(race_dir):
    race = read_race(race_dir)
    assert race.drivers == ["AAA", "BBB", "CCC"] and race.total_laps == 8 and race.track == "Synthetic Ring"
    assert race.has_telemetry and race.fuel_model.start_mass_kg == 110.0
    laps = race.laps.set_index(["Driver", "LapNumber"])
    assert laps.loc[("BBB", 4), "is_pit_in"] and laps.loc[("BBB", 5), "is_pit_out"]
    assert laps.loc[("BBB", 5), "Stint"] == 2 and not laps.loc[("AAA", 5), "is_pit_out"]
    assert all(laps.loc[(d, VSC_LAP), "is_vsc"] for d in race.drivers)
    assert not laps.loc[("AAA", 3), "is_neutralised"]
    # the lap's samples, with boundary samples, integrate to the known lap length (2 km)
    for lap in (2, 5, 8):
        raw = race.lap_telemetry("AAA", lap)
        t = np.asarray(raw.time_s)
        assert t[0] == 0.0 and t[-1] == pytest.approx(laps.loc[("AAA", lap), "LapTime"])
        assert integrate_distance(np.asarray(raw.channels["Speed"]), t)[-1] == pytest.approx(
            LAP_LENGTH_M, rel=0.01
        )


def test_gaps_follow_crossing_order(race_dir):
    race = read_race(race_dir)
    laps = race.laps.set_index(["Driver", "LapNumber"])
    # lap 3: order AAA, CCC, BBB on the road, all on the same lap
    ahead, behind = race.neighbours("CCC", 3)
    assert ahead[0] == pytest.approx(laps.loc[("CCC", 3), "Time"] - laps.loc[("AAA", 3), "Time"])
    assert ahead[1] == pytest.approx(laps.loc[("AAA", 3), "LapTime"] - laps.loc[("CCC", 3), "LapTime"])
    assert behind[0] == pytest.approx(laps.loc[("BBB", 3), "Time"] - laps.loc[("CCC", 3), "Time"])
    assert race.neighbours("AAA", 3)[0] is None  # leader on the road
    assert race.neighbours("BBB", 3)[1] is None
    # after its mistake on lap 7, AAA is behind CCC on the road
    assert race.gaps.set_index(["Driver", "LapNumber"]).loc[("AAA", 7), "AheadDriver"] == "CCC"
    with pytest.raises(DataError, match="driver not in this race"):
        race.neighbours("ZZZ", 3)


def test_real_rule_labels_on_synthetic_race(race_dir):
    table = label_table(read_race(race_dir)).set_index(["Driver", "LapNumber"])
    assert table.loc[("AAA", 7), "Risk"] == 2  # passed on track by CCC, nobody pitted
    assert (table["Risk"] == 2).sum() == 1
    # tire health: SOFT default life 18 laps, TyreLife 4 on lap 1
    assert table.loc[("AAA", 1), "TireHealth"] == pytest.approx(1 - 4 / 18)
    assert table.loc[("BBB", 5), "TireHealth"] > table.loc[("BBB", 4), "TireHealth"]  # new tires
    fuel = read_race(race_dir).fuel_model
    lt = table.loc[("AAA", 4), "LapTime"]
    assert table.loc[("AAA", 4), "FcLapTime"] == pytest.approx(lt - fuel.mass_at_lap_start(4) * 0.031)


def test_simulated_race_reads_truth_and_its_fuel_model(tmp_path):
    race = read_race(write_synthetic_race(tmp_path / "sim", n_laps=8, simulated=True))
    assert race.fuel_model.sensitivity_s_per_kg == 0.03 and race.track == "synthetic-ring"
    table = label_table(race).set_index(["Driver", "LapNumber"])
    assert table.loc[("AAA", 7), "Risk"] == 2 and table.loc[("BBB", 3), "Risk"] == 1
    assert table.loc[("BBB", 2), "Risk"] == 0 and table.loc[("CCC", 2), "NoiseSigma"] == 0.5


def test_race_without_telemetry_still_gives_laps_and_gaps(copy_race):
    path = copy_race()
    shutil.rmtree(path / "telemetry")
    race = read_race(path)
    assert not race.has_telemetry
    assert race.neighbours("CCC", 3)[0] is not None
    with pytest.raises(DataError, match="this race has no telemetry"):
        race.lap_telemetry("AAA", 2)


# --- bad input: each error names what is wrong -------------------------------------------------


def test_missing_laps_column(copy_race):
    path = copy_race()
    pd.read_csv(path / "laps.csv", index_col=0).drop(columns=["LapStartTime"]).to_csv(path / "laps.csv")
    with pytest.raises(DataError, match="missing column.*LapStartTime") as err:
        read_race(path)
    assert err.value.file.endswith("laps.csv") and err.value.field == "LapStartTime"


def test_missing_race_folder_and_laps_file(tmp_path):
    with pytest.raises(DataError, match="race folder not found"):
        read_race(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="file not found"):
        read_race(tmp_path / "empty")


def test_empty_laps_file(copy_race):
    path = copy_race()
    (path / "laps.csv").write_text("")
    with pytest.raises(DataError, match="cannot read"):
        read_race(path)


def test_truncated_telemetry_file(copy_race):
    path = copy_race()
    gz = path / "telemetry" / "1_telemetry.csv.gz"
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])
    race = read_race(path)  # laps still read; the car's telemetry fails when used
    with pytest.raises(DataError, match="cannot read \\(truncated or corrupt\\?\\)") as err:
        race.lap_telemetry("AAA", 2)
    assert "1_telemetry.csv.gz" in err.value.file


def test_corrupt_telemetry_file(copy_race):
    path = copy_race()
    (path / "telemetry" / "1_telemetry.csv.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_race(path).lap_telemetry("AAA", 2)


def test_telemetry_missing_column(copy_race):
    path = copy_race()
    f = path / "telemetry" / "3_telemetry.csv.gz"
    pd.read_csv(f, index_col=0).drop(columns=["RPM"]).to_csv(f)
    with pytest.raises(DataError, match="missing column.*RPM") as err:
        read_race(path).lap_telemetry("CCC", 2)
    assert err.value.field == "RPM"


def test_nan_in_telemetry_names_driver_lap_and_field(copy_race):
    path = copy_race()
    f = path / "telemetry" / "1_telemetry.csv.gz"
    tel = pd.read_csv(f, index_col=0)
    race = read_race(path)
    start = race.laps.set_index(["Driver", "LapNumber"]).loc[("AAA", 3), "LapStartTime"]
    row = int(np.argmax(pd.to_timedelta(tel["SessionTime"]).dt.total_seconds().to_numpy() > start + 5))
    tel.loc[row, "Speed"] = np.nan
    tel.to_csv(f)
    from strategist.data.engine import align_raw_lap

    with pytest.raises(DataError, match="driver AAA, lap 3.*non-finite value nan.*field Speed"):
        align_raw_lap(read_race(path).lap_telemetry("AAA", 3))


def test_time_going_backwards_in_telemetry(copy_race):
    path = copy_race()
    f = path / "telemetry" / "1_telemetry.csv.gz"
    tel = pd.read_csv(f, index_col=0)
    secs = pd.to_timedelta(tel["SessionTime"]).dt.total_seconds().to_numpy().copy()
    row = int(np.argmax(secs > 50.0))  # inside lap 2
    secs[row] = secs[row - 3]
    tel["SessionTime"] = pd.to_timedelta(secs, unit="s").astype(str)
    tel.to_csv(f)
    from strategist.data.engine import align_raw_lap

    with pytest.raises(DataError, match="driver AAA, lap 2.*goes backwards.*field Time"):
        align_raw_lap(read_race(path).lap_telemetry("AAA", 2))


def test_lap_ending_before_it_starts(copy_race):
    path = copy_race()
    laps = pd.read_csv(path / "laps.csv", index_col=0)
    laps.loc[2, "Time"] = "0 days 00:00:01"
    laps.to_csv(path / "laps.csv")
    with pytest.raises(DataError, match="lap ends .* before it starts") as err:
        read_race(path)
    assert err.value.driver == "AAA" and err.value.lap == 3 and err.value.field == "Time"


def test_bad_time_text(copy_race):
    path = copy_race()
    laps = pd.read_csv(path / "laps.csv", index_col=0)
    laps.loc[4, "LapStartTime"] = "yesterday"
    laps.to_csv(path / "laps.csv")
    with pytest.raises(DataError, match="not a time duration") as err:
        read_race(path)
    assert err.value.field == "LapStartTime"


def test_duplicate_lap(race_dir, tmp_path):
    dst = tmp_path / "dup"
    shutil.copytree(race_dir, dst)
    laps = pd.read_csv(dst / "laps.csv", index_col=0)
    pd.concat([laps, laps.iloc[[5]]]).to_csv(dst / "laps.csv")
    with pytest.raises(DataError, match="lap appears twice") as err:
        read_race(dst)
    assert err.value.driver == "AAA" and err.value.lap == 6


def test_too_short_lap(copy_race):
    path = copy_race()
    laps = pd.read_csv(path / "laps.csv", index_col=0)
    # lap 2 of AAA squeezed to its first 0.5 s: two samples, far too short to be a lap
    start = pd.to_timedelta(laps.loc[1, "LapStartTime"])
    laps.loc[1, "Time"] = str(start + pd.Timedelta(seconds=0.5))
    laps.to_csv(path / "laps.csv")
    from strategist.data.engine import align_raw_lap

    with pytest.raises(DataError, match="driver AAA, lap 2.*samples, need at least"):
        align_raw_lap(read_race(path).lap_telemetry("AAA", 2))


def test_gzip_helper_sanity(race_dir):
    with gzip.open(race_dir / "telemetry" / "1_telemetry.csv.gz", "rt") as fh:
        assert "SessionTime" in fh.readline()


# --- the real 2023 exports ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sakhir(real_races_dir):
    return read_race(real_races_dir / "01_sakhir")


@pytest.mark.realdata
def test_crossing_order_matches_position_order(sakhir):
    laps = sakhir.laps.dropna(subset=["Position"])
    for _, lap in laps.groupby("LapNumber"):
        by_time = lap.sort_values("Time")["Driver"].tolist()
        by_position = lap.sort_values("Position")["Driver"].tolist()
        assert by_time == by_position


@pytest.mark.realdata
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


@pytest.mark.realdata
def test_flags_on_sakhir(sakhir):
    laps = sakhir.laps.set_index(["Driver", "LapNumber"])
    assert laps.loc[("ALB", 41), "is_vsc"] and not laps.loc[("ALB", 30), "is_neutralised"]
    # two cars retired in the pits: in-laps without a matching out-lap
    assert laps["is_pit_in"].sum() - 2 == laps["is_pit_out"].sum() > 30
    assert not laps["is_sc"].any() and not laps["is_red"].any()


@pytest.mark.realdata
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


@pytest.mark.realdata
def test_race_without_telemetry(real_races_dir):
    race = read_race(real_races_dir / "08_montreal")
    assert not race.has_telemetry and len(race.gaps) == len(race.laps)
    assert race.laps["is_sc"].any()


@pytest.mark.realdata
def test_red_flag_race_is_flagged(real_races_dir):
    race = read_race(real_races_dir / "03_melbourne")
    assert race.laps["is_red"].any()


@pytest.mark.realdata
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


@pytest.mark.realdata
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
