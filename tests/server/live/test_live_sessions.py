"""Race sessions through the gateway (TestClient, ONNX Runtime backend, SQLite store): five laps of a
real race posted car by car give every car's prediction, equal to /predict on the Data Engine's
request for the same lap (two- and three-input models); bad and contradicting laps are refused with
the car and lap named and leave the session as it was; a new app on the same store resumes."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from fastapi.testclient import TestClient
from helpers.gateway import AUTH, settings_for
from helpers.live import feed_laps, real_race, replay_in_process, tiny_onnx

from server.main import create_app
from strategist.serving.race_requests import request_from_race

LAPS = 5
ATOL = 1e-5  # float32 model outputs; a batch of several cars may differ from one car in the last bits


@pytest.fixture(scope="module")
def race(real_races_dir):
    return real_race(real_races_dir)


@pytest.fixture(scope="module")
def posts(race):
    """Lap posts of laps 1..LAPS + 1 (built once; tests change deep copies)."""
    return feed_laps(race, LAPS + 1)


def _post(posts, car=None, lap=1):
    return copy.deepcopy(
        next(p for p in posts if (car is None or p["car"] == car) and p["lap_number"] == lap)
    )


@pytest.fixture(scope="module", params=["two-input", "three-input"])
def replayed(request, race, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    onnx = tiny_onnx(folder, context=request.param == "three-input")
    settings = settings_for(onnx, live_sqlite_path=folder / "sessions.sqlite", max_body_bytes=4_000_000)
    with TestClient(create_app(settings)) as client:
        session_id = replay_in_process(client, race, LAPS)
        yield client, session_id, settings


def _state(client, session_id):
    response = client.get(f"/live/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_every_car_of_the_field_is_predicted_after_each_lap(replayed, race):
    client, session_id, _ = replayed
    state = _state(client, session_id)
    drivers = set(race.laps.loc[race.laps["LapNumber"] <= LAPS, "Driver"])
    assert {row["car"] for row in state["cars"]} == drivers
    assert state["laps_ingested"] == int((race.laps["LapNumber"] <= LAPS).sum())
    for row in state["cars"]:
        assert row["last_lap"] == LAPS
        assert row["next_lap"] is not None and row["next_lap"]["lap"] == LAPS, row["no_prediction"]
        corridor = row["next_lap"]["expected_lap_time"]
        assert corridor["p10_s"] <= corridor["p50_s"] <= corridor["p90_s"]
        assert [c["lap"] for c in row["corridors"]] == list(range(1, LAPS + 1))
    # Race order: most laps, then earliest at the line; the feed's position agrees on lap 5.
    ends = [row["last_lap_end_s"] for row in state["cars"]]
    assert ends == sorted(ends)
    assert [row["position"] for row in state["cars"]] == sorted(row["position"] for row in state["cars"])


def test_predictions_equal_predict_on_the_data_engines_request(replayed, race):
    """Laps 2-4: every car around them has crossed the line since, so the session's gaps are the
    reader's for the whole race and the last revision must equal /predict exactly."""
    client, session_id, _ = replayed
    for row in _state(client, session_id)["cars"]:
        for corridor in row["corridors"]:
            if not 2 <= corridor["lap"] <= LAPS - 1:
                continue
            body = request_from_race(race, row["car"], corridor["lap"])
            answer = client.post("/predict", json=body, headers=AUTH).json()
            where = f"{row['car']} lap {corridor['lap']}"
            for q in ("p10_s", "p50_s", "p90_s"):
                assert corridor["expected_lap_time"][q] == pytest.approx(
                    answer["pace"]["expected_lap_time"][q], abs=ATOL
                ), where
            assert corridor["tire_health"] == pytest.approx(answer["tire_health"], abs=ATOL), where
            assert corridor["traffic_cost_s"] == pytest.approx(answer["traffic_cost_s"], abs=ATOL), where


def test_hit_rate_counts_judged_laps(replayed):
    client, session_id, _ = replayed
    state = _state(client, session_id)
    judged = [c for row in state["cars"] for c in row["corridors"] if c["inside"] is not None]
    assert state["hit_rate"]["judged"] == len(judged) > 0
    inside = sum(
        c["expected_lap_time"]["p10_s"] <= c["actual_s"] <= c["expected_lap_time"]["p90_s"] for c in judged
    )
    assert state["hit_rate"]["inside"] == inside
    assert state["hit_rate"]["share"] == pytest.approx(inside / len(judged))


def _rejected(client, session_id) -> float:
    """strategist_live_laps_rejected_total of the session (0 before its first refusal)."""
    series = f'strategist_live_laps_rejected_total{{session="{session_id}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(series)]
    return float(lines[0].removeprefix(series)) if lines else 0.0


def test_metrics_per_session(replayed):
    client, session_id, _ = replayed
    state = _state(client, session_id)
    text = client.get("/metrics").text
    assert f'strategist_live_laps_total{{session="{session_id}"}} {float(state["laps_ingested"])}' in text
    assert (
        f'strategist_live_predictions_total{{session="{session_id}"}} {float(state["predictions_made"])}'
        in text
    )
    assert f'strategist_live_corridor_hit_rate{{session="{session_id}"}} {state["hit_rate"]["share"]}' in text


def test_a_repeated_lap_changes_nothing(replayed, posts):
    client, session_id, _ = replayed
    before = _state(client, session_id)
    post = _post(posts)
    response = client.post(f"/live/sessions/{session_id}/laps", json=post, headers=AUTH)
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert _state(client, session_id) == before


@pytest.mark.parametrize(
    "change, status, words",
    [
        (lambda p: p["timing"].update(compound="SOFTISH"), 422, "timing.compound"),
        (lambda p: p["timing"].update(lap_end_s=1.0), 422, "lap_end_s"),
        (lambda p: p["timing"].update(tyre_life=-3), 422, "timing.tyre_life"),
        (lambda p: p["telemetry"]["channels"]["Speed"].__setitem__(slice(None), [0.0] * 3), 422, "telemetry"),
        (lambda p: p.update(lap_number=3), 409, "differs from the lap already stored"),
        (lambda p: p.update(lap_number=99), 422, "the race has 57 laps"),
    ],
)
def test_bad_laps_are_refused_naming_car_and_lap_and_leave_the_session_as_it_was(
    replayed, posts, change, status, words
):
    client, session_id, _ = replayed
    before = _state(client, session_id)
    refused = _rejected(client, session_id)
    post = _post(posts, "VER", LAPS + 1)
    change(post)
    response = client.post(f"/live/sessions/{session_id}/laps", json=post, headers=AUTH)
    assert response.status_code == status, response.text
    messages = [d["msg"] for d in response.json()["detail"]]
    assert all(m.startswith(f"car VER, lap {post['lap_number']}: ") for m in messages), messages
    assert words in response.text
    assert _state(client, session_id) == before
    assert _rejected(client, session_id) == refused + 1


def test_a_stored_lap_sent_again_with_other_values_is_a_conflict(replayed, posts):
    client, session_id, _ = replayed
    before = _state(client, session_id)
    post = _post(posts)
    post["timing"]["tyre_life"] += 1
    response = client.post(f"/live/sessions/{session_id}/laps", json=post, headers=AUTH)
    assert response.status_code == 409
    assert f"car {post['car']}, lap 1: differs from the lap already stored" in response.text
    assert _state(client, session_id) == before


def test_unknown_session_conflicting_session_and_auth(replayed, posts):
    client, session_id, _ = replayed
    assert client.get("/live/sessions/nope").status_code == 404
    assert "no race session 'nope'" in client.get("/live/nope").text
    post = _post(posts)
    assert client.post("/live/sessions/nope/laps", json=post, headers=AUTH).status_code == 404
    assert client.post(f"/live/sessions/{session_id}/laps", json=post).status_code == 401
    other = {"session_id": session_id, "circuit": "Elsewhere", "race_laps": 50}
    assert client.post("/live/sessions", json=other, headers=AUTH).status_code == 409
    reserved = {"session_id": "sessions", "circuit": "x", "race_laps": 50}
    assert client.post("/live/sessions", json=reserved, headers=AUTH).status_code == 422


def test_the_stream_sends_the_field_then_the_cars_that_change(replayed, race):
    client, session_id, _ = replayed
    live = client.app.state.live

    async def first_two() -> list[tuple[str, dict]]:
        events = live.events(session_id, poll_s=0.05)
        out = []
        first = await events.__anext__()
        out.append(first)
        session = await live.session(session_id)
        session.touch({"VER"})  # what a lap or prediction does
        out.append(await asyncio.wait_for(events.__anext__(), 5))
        await events.aclose()
        return out

    texts = (
        client.portal.call(first_two)
        if hasattr(client, "portal") and client.portal
        else asyncio.run(first_two())
    )
    parsed = []
    for text in texts:
        name = text.split("\n", 1)[0].removeprefix("event: ")
        data = json.loads(text.split("data: ", 1)[1])
        parsed.append((name, data))
    assert parsed[0][0] == "state" and len(parsed[0][1]["cars"]) == len(_state(client, session_id)["cars"])
    assert parsed[1][0] == "cars" and [row["car"] for row in parsed[1][1]["cars"]] == ["VER"]


def test_a_new_gateway_on_the_same_store_resumes(replayed, posts):
    client, session_id, settings = replayed
    before = _state(client, session_id)
    with TestClient(create_app(settings)) as again:
        assert _state(again, session_id) == before
        post = _post(posts, lap=LAPS + 1)
        response = again.post(f"/live/sessions/{session_id}/laps", json=post, headers=AUTH)
        assert response.status_code == 200 and post["car"] in response.json()["predicted"]
