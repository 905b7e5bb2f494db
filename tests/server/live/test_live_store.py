"""The session store contract, on SQLite and on a real redis-server (started on a free port): laps are
stored once per (car, lap), both logs read back in order from any sequence number, and a second
store object on the same data (a restarted gateway, another replica) sees everything."""

from __future__ import annotations

import pytest
from helpers.live import redis_server

from server.live.store import RedisStore, SQLiteStore


@pytest.fixture(params=["sqlite", "redis"])
def stores(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "s.sqlite"
        yield SQLiteStore(path), lambda: SQLiteStore(path)
        return
    with redis_server(tmp_path) as url:
        yield RedisStore(url), lambda: RedisStore(url)


def test_laps_are_stored_once_and_read_back_in_order(stores):
    store, reopen = stores
    assert store.create_session("s1", '{"a": 1}') == '{"a": 1}'
    assert store.create_session("s1", '{"a": 2}') == '{"a": 1}'  # the first one stays
    assert store.session_meta("nope") is None
    seqs = [store.append_lap("s1", car, lap, f"{car}{lap}") for lap in (1, 2) for car in ("VER", "HAM")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert store.append_lap("s1", "VER", 1, "other") is None
    assert store.lap_record("s1", "VER", 1) == "VER1"
    assert store.lap_record("s1", "VER", 9) is None
    again = reopen()
    assert [r for _, r in again.laps_since("s1", 0)] == ["VER1", "HAM1", "VER2", "HAM2"]
    assert [r for _, r in again.laps_since("s1", seqs[1])] == ["VER2", "HAM2"]
    assert again.session_ids() == ["s1"]
    again.close()
    store.close()


def test_predictions_log_and_sessions_are_separate(stores):
    store, reopen = stores
    store.create_session("a", "{}")
    store.create_session("b", "{}")
    first = store.append_prediction("a", "p1")
    store.append_prediction("b", "q1")
    store.append_prediction("a", "p2")
    store.append_lap("b", "VER", 1, "x")
    assert [r for _, r in store.predictions_since("a", 0)] == ["p1", "p2"]
    assert [r for _, r in store.predictions_since("a", first)] == ["p2"]
    assert store.laps_since("a", 0) == []
    assert reopen().predictions_since("b", 0)[0][1] == "q1"
    store.close()
