"""Dataset building: round trip, shapes/dtypes, labels, resumability, skip accounting, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers.race_folder import write_synthetic_race

from strategist import contract
from strategist.cli import main
from strategist.data.dataset import BuildConfig, build_dataset, expand_race_dirs, race_samples
from strategist.data.dataset_format import ARRAY_SPECS, load_arrays, manifest_path
from strategist.data.engine import align_raw_lap, build_model_inputs
from strategist.data.fastf1_reader import read_race
from strategist.errors import DataError


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    root = tmp_path_factory.mktemp("season")
    write_synthetic_race(root / "01_real_like", n_laps=8)
    write_synthetic_race(root / "02_sim", n_laps=8, simulated=True, seed=1)
    return root


def test_round_trip_shapes_dtypes_and_manifest(season, tmp_path):
    manifest = build_dataset([season], tmp_path / "ds", progress=False)
    arrays, loaded = load_arrays(tmp_path / "ds")
    assert loaded == manifest
    n = manifest["n_samples"]
    assert n == 2 * 3 * 7  # 2 races x 3 cars x laps 1..7 predicting 2..8
    for name, (dtype, shape) in ARRAY_SPECS.items():
        arr = arrays[name]
        assert arr.shape == (n, *shape), name
        assert arr.dtype.kind == "U" if dtype == "str" else arr.dtype == np.dtype(dtype), name
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.npz", "shard-00001.npz"]
    assert set(arrays["race"]) == {"01_real_like", "02_sim"}
    assert set(arrays["regime"]) <= {"clean", "traffic", "pit", "sc"}
    assert np.isfinite(arrays["telemetry"]).all() and np.isfinite(arrays["tactical"]).all()
    stats = manifest["stats"]
    assert len(stats["telemetry_mean"]) == 5 and np.array(stats["tactical_std"]).shape == (2, 2)
    # The pace target's centre and scale are robust (median, 1.4826 x MAD): pit laps do not set them.
    delta = (arrays["pace_target"] - arrays["pace_ref"]).astype(np.float64)
    delta = delta[np.isfinite(delta)]
    assert stats["pace_delta_mean"] == pytest.approx(float(np.median(delta)), abs=1e-4)
    mad = 1.4826 * float(np.median(np.abs(delta - np.median(delta))))
    assert stats["pace_delta_std"] == pytest.approx(mad, rel=1e-4)
    assert len(stats["context_mean"]) == len(stats["context_std"]) == contract.N_CONTEXT
    assert np.isfinite(arrays["context"]).all() and arrays["pace_forecastable"].dtype == bool
    assert manifest["fuel_model"]["02_sim"]["sensitivity_s_per_kg"] == 0.03
    # simulated-only columns
    sim = arrays["race"] == "02_sim"
    assert np.isfinite(arrays["noise_sigma"][sim]).all() and np.isnan(arrays["noise_sigma"][~sim]).all()
    assert np.isfinite(arrays["clean_target"][sim]).all()
    only = load_arrays(tmp_path / "ds", fields=["lap", "risk"])[0]
    assert set(only) == {"lap", "risk"}
    with pytest.raises(DataError, match="unknown dataset field"):
        load_arrays(tmp_path / "ds", fields=["speed"])


def test_samples_go_through_the_gateway_function(season):
    race = read_race(season / "01_real_like")
    arrays, skipped, corrected = race_samples(race, BuildConfig())
    i = int(np.flatnonzero((arrays["driver"] == "CCC") & (arrays["lap"] == 5))[0])  # L = 4
    laps = [align_raw_lap(race.lap_telemetry("CCC", n)) for n in (4, 3, 2, 2, 2)]
    telemetry, tactical = build_model_inputs(laps, *race.neighbours("CCC", 4))
    np.testing.assert_array_equal(arrays["telemetry"][i], telemetry)
    np.testing.assert_array_equal(arrays["tactical"][i], tactical)
    assert not skipped
    assert corrected["throttle_clipped"] > 0  # lap 1 starts from the grid, where Throttle reads 104


def test_labels_and_stack_bookkeeping(season, tmp_path):
    build_dataset([season], tmp_path / "ds", progress=False)
    a, _ = load_arrays(tmp_path / "ds")
    real = a["race"] == "01_real_like"
    pick = lambda d, lap, sel=real: int(np.flatnonzero(sel & (a["driver"] == d) & (a["lap"] == lap))[0])  # noqa: E731
    assert a["risk"][pick("AAA", 7)] == 2  # overtaken on track in lap 7
    assert a["regime"][pick("BBB", 5)] == "pit" and a["regime"][pick("AAA", 6)] == "sc"
    assert a["regime"][pick("AAA", 4)] == "clean" and a["regime"][pick("CCC", 3)] == "traffic"
    i = pick("AAA", 2)  # L = 1: only L is real, L_base is substituted
    assert np.isfinite(a["fc_laps"][i, 0]) and np.isnan(a["fc_laps"][i, 1:]).all()
    i = pick("AAA", 8)  # L = 7: stint laps 1..7, lap 1 and the VSC lap 6 are NaN
    hist = a["stint_fc_laps"][i]
    assert np.isnan(hist[:2]).all() and np.isnan(hist[6]) and np.isfinite(hist[[2, 3, 4, 5, 7]]).all()
    assert a["fc_laps"][i, 0] == hist[-1] == a["pace_ref"][i]
    sim = a["race"] == "02_sim"
    assert a["risk"][pick("BBB", 3, sim)] == 1  # truth TrafficLoss 2.0 s in lap 3
    assert a["tyre_life"][pick("BBB", 6, sim)] == 1.0  # L = 5 is the out-lap


def test_build_is_resumable(season, tmp_path):
    out = tmp_path / "ds"
    first = build_dataset([season], out, progress=False)
    assert first["build"]["races_built_this_run"] == 2
    stamp = (out / "shard-00000.npz").stat().st_mtime_ns
    again = build_dataset([season], out, progress=False)
    assert again["build"]["races_built_this_run"] == 0
    assert (out / "shard-00000.npz").stat().st_mtime_ns == stamp
    assert again["n_samples"] == first["n_samples"]
    # a lost shard is rebuilt; a different segment setting rebuilds everything
    (out / "shard-00001.npz").unlink()
    assert build_dataset([season], out, progress=False)["build"]["races_built_this_run"] == 1
    assert (
        build_dataset([season], out, segment=(0.0, 0.5), progress=False)["build"]["races_built_this_run"] == 2
    )


def test_skips_are_counted_and_reported(season, tmp_path):
    races = tmp_path / "races"
    shutil.copytree(season / "01_real_like", races / "a_no_telemetry")
    shutil.rmtree(races / "a_no_telemetry" / "telemetry")
    shutil.copytree(season / "01_real_like", races / "b_broken_car")
    (races / "b_broken_car" / "telemetry" / "2_telemetry.csv.gz").write_bytes(b"garbage")
    manifest = build_dataset([races], tmp_path / "ds", progress=False)
    assert manifest["skipped"] == {"races_without_telemetry": 1, "drivers_unreadable_telemetry": 1}
    assert manifest["n_samples"] == 2 * 7
    by_race = {r["race"]: r for r in manifest["races"]}
    assert by_race["a_no_telemetry"]["n"] == 0 and not by_race["a_no_telemetry"]["has_telemetry"]
    with pytest.raises(DataError, match="2_telemetry.csv.gz.*truncated or corrupt"):
        build_dataset([races / "b_broken_car"], tmp_path / "strict", strict=True, progress=False)


def test_bad_race_arguments(tmp_path):
    with pytest.raises(DataError, match="race folder not found"):
        expand_race_dirs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a race folder"):
        expand_race_dirs([tmp_path / "empty"])
    with pytest.raises(DataError, match="no manifest.json"):
        load_arrays(tmp_path / "empty")
    manifest_path(tmp_path / "empty").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(DataError, match="format_version 99"):
        load_arrays(tmp_path / "empty")


def test_cli_build_and_info(season, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(["dataset", "build", "--races", str(season / "02_sim"), "--out", str(out), "--no-progress"]) == 0
    )
    assert "21 samples in 1 shard(s)" in capsys.readouterr().out
    assert main(["dataset", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "02_sim" in text and "simulated" in text
    assert main(["dataset", "info", str(tmp_path / "nothing")]) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_a_bad_lap_is_skipped_counted_and_substituted(season, tmp_path):
    import pandas as pd

    race_dir = tmp_path / "races" / "r"
    shutil.copytree(season / "01_real_like", race_dir)
    f = race_dir / "telemetry" / "1_telemetry.csv.gz"
    tel = pd.read_csv(f, index_col=0)
    race = read_race(race_dir)
    lap3 = race.laps.set_index(["Driver", "LapNumber"]).loc[("AAA", 3)]
    secs = pd.to_timedelta(tel["SessionTime"]).dt.total_seconds()
    tel.loc[int(np.argmax(secs.to_numpy() > lap3["LapStartTime"] + 3)), "RPM"] = np.inf
    tel.to_csv(f)
    manifest = build_dataset([race_dir], tmp_path / "ds", progress=False)
    assert manifest["skipped"]["laps_failed_alignment"] == 1
    assert manifest["skipped"]["samples_lap_L_without_telemetry"] == 1
    a, _ = load_arrays(tmp_path / "ds")
    i = int(np.flatnonzero((a["driver"] == "AAA") & (a["lap"] == 5))[0])  # L = 4, L-1 = 3 is bad
    assert np.isnan(a["fc_laps"][i, 1]) and np.isfinite(a["fc_laps"][i, 2])
    np.testing.assert_array_equal(a["telemetry"][i, 1], a["telemetry"][i, 0])  # L-1 <- L
    with pytest.raises(DataError, match="driver AAA, lap 3.*non-finite value inf.*field RPM"):
        build_dataset([race_dir], tmp_path / "strict", strict=True, progress=False)


def test_lap_without_samples(season, tmp_path):
    import pandas as pd

    race_dir = tmp_path / "r"
    shutil.copytree(season / "01_real_like", race_dir)
    f = race_dir / "telemetry" / "3_telemetry.csv.gz"
    tel = pd.read_csv(f, index_col=0)
    race = read_race(race_dir)
    lap = race.laps.set_index(["Driver", "LapNumber"]).loc[("CCC", 4)]
    secs = pd.to_timedelta(tel["SessionTime"]).dt.total_seconds()
    tel[(secs < lap["LapStartTime"] - 1) | (secs > lap["Time"] + 1)].to_csv(f)  # a hole over lap 4
    with pytest.raises(DataError, match="no telemetry samples between") as err:
        read_race(race_dir).lap_telemetry("CCC", 4)
    assert err.value.driver == "CCC" and err.value.lap == 4 and err.value.field == "SessionTime"
