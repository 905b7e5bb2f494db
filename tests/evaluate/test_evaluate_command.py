"""`strategist evaluate` end to end on a tiny dataset and a tiny checkpoint."""

from __future__ import annotations

import json

import pytest
from helpers.eval_data import synthetic_arrays, write_dataset

from strategist.cli import main
from strategist.data.dataset_format import read_manifest
from strategist.errors import DataError
from strategist.evaluate.datasets import check_no_race_leak


def _tiny_checkpoint(out_dir, stats):
    from helpers.tiny import tiny_config

    from strategist.model import build_model
    from strategist.model.checkpoint import save_checkpoint

    cfg = tiny_config()
    model = build_model(cfg)
    model.set_stats(stats)
    return save_checkpoint(model, cfg, out_dir, stats=stats)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    train = write_dataset(synthetic_arrays(n_races=2, n_drivers=3, n_laps=14, seed=0), root / "train")
    test = synthetic_arrays(n_races=1, n_drivers=2, n_laps=14, seed=1)
    test["race"] = test["race"].astype("<U16")
    test["race"][:] = "held_out_race"
    test_dir = write_dataset(test, root / "test")
    stats = read_manifest(train)["stats"]
    ckpt = _tiny_checkpoint(root / "ckpt", stats)
    return root, train, test_dir, ckpt


def test_evaluate_command_writes_report_json_and_plots(tiny_run, capsys):
    root, train, test_dir, ckpt = tiny_run
    out = root / "out"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            f"tiny={ckpt}",
            "--data",
            str(test_dir),
            "--train",
            str(train),
            "--out",
            str(out),
        ]
        + ["--gbm-estimators", "10"]
    )
    assert code == 0
    for name in ("report.md", "results.json", "eval_corridor.png", "eval_reliability.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    payload = json.loads((out / "results.json").read_text())
    results = payload["results"]
    assert set(results) == {
        "tiny",
        "persistence",
        "stint trend",
        "climatology",
        "gbm",
        "timing gbm",
        "noise floor",
        "simulator oracle",
    }
    n = results["tiny"]["pace"]["all"]["n"]
    assert n == results["persistence"]["pace"]["all"]["n"] > 0
    assert 0.0 <= results["tiny"]["risk"]["roc_auc"] <= 1.0
    # the model's quantiles come out of a non-crossing head
    assert results["tiny"]["pace"]["all"]["crossing_rate"] == 0.0
    report = (out / "report.md").read_text()
    assert "| persistence |" in report and "| noise floor |" in report and "## Targets" in report


def test_evaluate_refuses_a_race_seen_in_training(tiny_run, tmp_path):
    _root, train, _test_dir, ckpt = tiny_run
    code = main(
        ["evaluate", "--checkpoint", str(ckpt), "--data", str(train), "--train", str(train)]
        + ["--out", str(tmp_path)]
    )
    assert code == 1  # printed as a clear error, not a traceback


def test_leak_check_names_the_shared_race():
    a = synthetic_arrays(n_races=2, n_drivers=1, n_laps=8)
    b = synthetic_arrays(n_races=1, n_drivers=1, n_laps=8)
    with pytest.raises(DataError, match="race_0"):
        check_no_race_leak(a, b)


def test_evaluate_names_missing_data(tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path),
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    assert "nope" in capsys.readouterr().err


@pytest.mark.realdata
def test_evaluate_a_real_race_folder_built_on_the_fly(tiny_run, real_races_dir, tmp_path):
    _root, _train, _test, ckpt = tiny_run
    race = real_races_dir / "01_sakhir"
    if not race.exists():
        pytest.skip(f"{race} not found")
    out = tmp_path / "real"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(race), "--out", str(out)]) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["simulated"] is False
    assert "noise floor" not in payload["results"]  # real races have no simulator noise
    assert payload["results"]["ckpt"]["pace"]["all"]["n"] > 500
    assert "## Targets" not in (out / "report.md").read_text()
