"""benchmarks.refusal_floor: its two servers refuse what they should (the gateway by its admission
control, before the body), the bound follows the chaos formula, and one short real row runs."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks import refusal_floor

EXAMPLE = refusal_floor.EXAMPLE_BODY.read_bytes()


def test_the_bare_app_refuses_everything_but_the_readiness_path():
    with TestClient(refusal_floor.bare_refusal_app()) as client:
        assert client.post("/predict", content=EXAMPLE).status_code == 429
        assert client.get("/healthz").status_code == 200


def test_the_gateway_variant_refuses_every_prediction_at_admission_and_counts_it_as_in_flight():
    with TestClient(refusal_floor.gateway_with_slots_taken()) as client:
        answer = client.post("/predict", content=EXAMPLE, headers={"content-type": "application/json"})
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        assert "in flight" in answer.json()["detail"]
        metrics = client.get("/metrics").text
        assert 'strategist_requests_shed_total{reason="in_flight"} 1.0' in metrics
        assert client.get("/healthz").status_code == 200  # only the prediction paths are refused


def test_bound_is_one_less_the_refused_share_of_the_admitted_cost():
    assert refusal_floor.bound(0.3, 6.0, 4.0) == "0.85x"  # 1 - 3 x 0.3 / 6
    assert refusal_floor.bound(None, 6.0, 4.0) == "-"


def test_one_short_row_measures_the_server_and_renders(tmp_path: Path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    # 400 refusals: enough server CPU (~0.1 ms each) to span several 10 ms ticks of /proc's clock
    # even on a fast box (40 measured 0 ticks there).
    row = refusal_floor.measure("bare", empty, rate=400.0, seconds=1.0, work=tmp_path)
    assert row["statuses"] == {"429": 400}
    assert row["server_cpu_ms_per_request"] > 0
    result = {
        "machine": "test machine", "seconds": 1.0, "factor": 4.0, "admitted_ms": 6.0,
        "admitted_source": "test", "rows": [row],
    }  # fmt: skip
    table = refusal_floor.markdown(result, "python -m benchmarks.refusal_floor")
    assert f"| bare | 2 B | 400 | {json.dumps(row['statuses'])} |" in table
    assert table.rstrip().endswith(f"{refusal_floor.bound(row['server_cpu_ms_per_request'], 6.0, 4.0)} |")


def test_the_outermost_variant_refuses_the_same_way():
    with TestClient(refusal_floor.admission_outermost()) as client:
        answer = client.post("/predict", content=EXAMPLE, headers={"content-type": "application/json"})
        assert answer.status_code == 429 and "in flight" in answer.json()["detail"]
        assert answer.headers["x-request-id"]
        assert client.get("/healthz").status_code == 200
