"""Two real local Tritons behind one gateway: one is killed with SIGKILL under load and restarted.

The gateway's pool (server/triton_pool.py) must keep every request answered (a call lost with the
killed Triton is retried once on the other), send the load to the survivor, and take the restarted
Triton back into rotation. The scenario is benchmarks.failover's, with short phases.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers.gateway import simulated_request
from helpers.skips import skip_without_triton
from helpers.tiny import save_tiny_checkpoint

from benchmarks.failover import run_failover
from export.repository import build_cpu_repository
from export.triton_config import ServingSettings


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    skip_without_triton()
    _, checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=3)
    repo = tmp_path_factory.mktemp("model_repository")
    build_cpu_repository(checkpoint, repo, settings=ServingSettings(max_batch_size=8, cpu_intra_op_threads=1))
    return repo


@pytest.mark.timeout(240)
def test_kill_one_triton_under_load_no_request_fails_and_it_rejoins(repository, tmp_path):
    bodies = [simulated_request(seed, raw=False) for seed in range(50, 56)]
    result = asyncio.run(
        run_failover(
            repository,
            bodies,
            concurrency=4,
            before_kill_s=1.5,
            after_kill_s=1.5,
            after_rejoin_s=1.5,
            log_dir=tmp_path,
        )
    )
    victim = result["killed_endpoint"]
    (survivor,) = [u for u in result["calls_by_endpoint"]["before_kill"] if u != victim]
    calls = result["calls_by_endpoint"]
    assert result["requests_sent"] > 20, result
    # Calls lost with the killed Triton were retried on the other one: no request failed.
    assert result["requests_failed"] == 0, result
    # Both served before the kill (least-outstanding with rotation); while one was down only the
    # survivor did (a call in flight at the kill may still be answered: its reply can be on the wire).
    assert calls["before_kill"][victim] > 0 and calls["before_kill"][survivor] > 0, calls
    assert calls["kill_to_restart"][victim] <= result["in_flight_on_killed_at_kill"], result
    assert calls["kill_to_restart"][survivor] > 0, calls
    # The restarted Triton was found by the background probe and carries load again.
    assert calls["after_restart"][victim] > 0, calls
    assert result["rebalance_s"] < 1.0 and result["rejoin_s"] < 3.0, result
