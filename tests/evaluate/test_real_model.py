"""The served real-data checkpoint on a real race it never trained on: shipped files, the three
inputs, and tire health that behaves along real stints (falls within a stint, back near 1 on new
tyres). Needs the real 2023 data; skips with the reason without it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from strategist import contract
from strategist.data.dataset import BuildConfig, race_samples
from strategist.data.fastf1_reader import read_race
from strategist.evaluate.model_forecast import model_predictions
from strategist.model.checkpoint import load_checkpoint
from strategist.paths import REAL_CHECKPOINT_DIR, f1_2023_dir
from strategist.pipeline.real_study import SPLIT_FILE, tire_checks
from strategist.pipeline.reproduce import SHIPPED_FILES

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_served_checkpoint_holds_exactly_the_shipped_files():
    assert sorted(p.name for p in REAL_CHECKPOINT_DIR.iterdir()) == sorted(SHIPPED_FILES)
    _, cfg, meta = load_checkpoint(REAL_CHECKPOINT_DIR)
    assert cfg.input_names == (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL, contract.INPUT_CONTEXT)
    assert "interval_calibration" in meta["extra"]


@pytest.mark.realdata
@pytest.mark.slow
def test_tire_health_falls_within_stints_and_resets_on_new_tyres():
    data_dir = f1_2023_dir()
    if not data_dir.is_dir():
        pytest.skip(f"real 2023 data not found at {data_dir} (set STRATEGIST_DATA)")
    split = json.loads((REAL_CHECKPOINT_DIR / SPLIT_FILE).read_text())
    race_id = split["val"][0]  # a race the shipped weights never trained on
    arrays, _, _ = race_samples(read_race(data_dir / race_id), BuildConfig(), race_id)
    model, _, _ = load_checkpoint(REAL_CHECKPOINT_DIR)
    tire = model_predictions(model, arrays).tire_health
    checks = tire_checks(arrays, tire)
    assert checks["n_steps"] > 300
    assert checks["rise_share_within_stint"] <= 0.05, checks  # non-increasing up to noise
    assert checks["mean_health_fresh_tyres"] >= 0.85, checks
    assert checks["spearman_vs_tyre_life"] <= -0.8, checks
    # Every stop onto new tyres: health jumps back up from the in-lap to the out-lap's next lap.
    life = arrays["context"][:, contract.CONTEXT_FEATURES.index("L.tyre_life")]
    pit_out = arrays["context"][:, contract.CONTEXT_FEATURES.index("L.pit_out")] > 0.5
    order = np.lexsort((arrays["lap"], arrays["driver"]))
    jumps = [
        tire[b] - tire[a]
        for a, b in zip(order[:-1], order[1:], strict=True)
        if arrays["driver"][a] == arrays["driver"][b] and pit_out[b] and life[b] <= 2
    ]
    assert len(jumps) >= 5 and np.mean(jumps) > 0.2, jumps
