"""One code path with training: the stack the gateway builds from a request's raw telemetry (and the
timing context from its per-lap timing) is what the dataset builder (strategist.data.dataset.race_samples)
stores for the same car and lap. Real races and served three-input models: tests/server/test_gateway_timing_real.py."""

from __future__ import annotations

import numpy as np
import pytest

from server.preprocess import preprocess
from server.schemas import PredictRequest
from strategist import contract
from strategist.data.dataset import BuildConfig, race_samples
from strategist.data.fastf1_reader import read_race
from strategist.data.tactical import tactical_tensor
from strategist.serving.race_requests import request_from_race


@pytest.fixture(scope="module")
def simulated_race(tmp_path_factory):
    from strategist.sim.simulate import simulate_race

    return read_race(simulate_race(tmp_path_factory.mktemp("races"), seed=11, n_cars=6, n_laps=14))


def test_gateway_stack_equals_the_dataset_sample(simulated_race):
    arrays, skipped, _ = race_samples(simulated_race, BuildConfig())
    assert len(arrays["lap"]) > 0, f"the simulated race gave no samples (skipped: {dict(skipped)})"
    rng = np.random.default_rng(0)
    picks = rng.choice(len(arrays["lap"]), size=min(6, len(arrays["lap"])), replace=False)
    for i in picks:
        driver, lap = str(arrays["driver"][i]), int(arrays["lap"][i]) - 1  # dataset lap = target L+1
        request = PredictRequest.model_validate(request_from_race(simulated_race, driver, lap, decimals=None))
        batch = preprocess([request], default_race_laps=57, input_names=tuple(contract.INPUT_SHAPES))
        np.testing.assert_array_equal(
            batch.telemetry[0], arrays["telemetry"][i], err_msg=f"{driver} lap {lap}"
        )
        np.testing.assert_array_equal(batch.tactical[0], arrays["tactical"][i], err_msg=f"{driver} lap {lap}")
        np.testing.assert_array_equal(batch.telemetry[1], arrays["telemetry"][i])  # clean-air row: same laps
        np.testing.assert_array_equal(batch.tactical[1], tactical_tensor(None, None))
        assert batch.context is not None
        np.testing.assert_array_equal(batch.context[0], arrays["context"][i], err_msg=f"{driver} lap {lap}")
        np.testing.assert_array_equal(batch.context[1], arrays["context"][i])  # clean air: same timing
