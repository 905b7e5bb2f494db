"""The lean request path (server/fast_path.py) answers exactly as the FastAPI routes do: the same
JSON, status codes and headers for answers, 401, 405, 413, 415 and 422, and the same metrics."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, settings_for, simulated_request

from server.main import create_app

JSON = AUTH | {"content-type": "application/json"}


@pytest.fixture(scope="module")
def clients(tiny_model):
    made = {}
    for lean in (True, False):
        settings = settings_for(tiny_model[1], max_batch_cars=2, max_body_bytes=400_000, lean_routes=lean)
        made[lean] = TestClient(create_app(settings))
        made[lean].__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


def _bad_lap(body: dict) -> dict:
    body["laps"][2]["channels"]["Speed"][3] = -5.0
    return body


CASES = {
    "answer": ("/predict", json.dumps(simulated_request(1)), JSON),
    "aligned answer": ("/predict", json.dumps(simulated_request(2, raw=False)), JSON),
    "batch": ("/predict/batch", json.dumps({"cars": [simulated_request(3), simulated_request(4)]}), JSON),
    "422 sample": ("/predict", json.dumps(_bad_lap(simulated_request(5))), JSON),
    "422 not json": ("/predict", "{", JSON),
    "422 too many cars": ("/predict/batch", json.dumps({"cars": [{}, {}, {}]}), JSON),
    "415": ("/predict", "{}", AUTH | {"content-type": "text/plain"}),
    "401 missing": ("/predict", json.dumps(simulated_request(1)), {"content-type": "application/json"}),
    "401 wrong": ("/predict", "{}", JSON | {"Authorization": "Bearer nope"}),
    "413": ("/predict", "x" * 500_000, JSON),
}


def _comparable(response) -> tuple:
    answer = response.json()
    if isinstance(answer, dict):
        answer.pop("timing", None)
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    return response.status_code, answer, headers


@pytest.mark.parametrize("case", list(CASES))
def test_lean_path_answers_like_the_routes(clients, case):
    path, body, headers = CASES[case]
    rid = {"x-request-id": f"case-{case.replace(' ', '-')}"}
    lean, routed = (clients[flag].post(path, content=body, headers=headers | rid) for flag in (True, False))
    assert _comparable(lean) == _comparable(routed)
    assert lean.headers["x-request-id"] == rid["x-request-id"]


def test_other_methods_and_paths_reach_the_app(clients):
    for flag in (True, False):
        assert clients[flag].get("/predict", headers=AUTH).status_code == 405
        assert clients[flag].get("/healthz").status_code == 200


def _series(text: str, name: str, **labels: str) -> float:
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


def test_lean_path_counts_requests_and_errors_in_the_metrics(clients):
    client = clients[True]
    before = client.get("/metrics").text
    client.post("/predict", content=json.dumps(simulated_request(6)), headers=JSON)
    client.post("/predict", content="{", headers=JSON)
    after = client.get("/metrics").text
    for name, labels in (
        ("strategist_requests_total", {"endpoint": "/predict", "status": "200"}),
        ("strategist_requests_total", {"endpoint": "/predict", "status": "422"}),
        ("strategist_request_errors_total", {"endpoint": "/predict", "reason": "validation"}),
    ):
        assert _series(after, name, **labels) == _series(before, name, **labels) + 1, (name, labels)


def test_the_lean_path_is_the_one_that_answers(clients):
    """With the routes' dependencies broken, the lean app still answers (it never resolves them)."""
    from server.deps import get_predictor

    def broken():
        raise AssertionError("the FastAPI route was used")

    body = json.dumps(simulated_request(7))
    for lean in (True, False):
        app = clients[lean].app
        app.dependency_overrides[get_predictor] = broken
        try:
            if lean:
                assert clients[lean].post("/predict", content=body, headers=JSON).status_code == 200
            else:
                with pytest.raises(AssertionError, match="route was used"):
                    clients[lean].post("/predict", content=body, headers=JSON)
        finally:
            app.dependency_overrides.clear()


def test_a_streamed_body_over_the_limit_is_a_413_on_both_paths(clients):
    def chunks():
        for _ in range(10):
            yield b"x" * 50_000  # no Content-Length: the limit is checked while the body streams in

    answers = [clients[lean].post("/predict", content=chunks(), headers=JSON) for lean in (True, False)]
    assert [a.status_code for a in answers] == [413, 413]
    assert answers[0].json() == answers[1].json()
