"""The endpoint pool's choices and the settings that list the endpoints (no Triton needed)."""

from __future__ import annotations

import pytest

from server.settings import GatewaySettings
from server.triton_pool import Endpoint, TritonPool


def _pool(*states: tuple[str, bool, int]) -> TritonPool:
    pool = TritonPool([url for url, _, _ in states], "m")
    for url, up, outstanding in states:
        pool.endpoints[url] = Endpoint(url, client=None, up=up, outstanding=outstanding)  # type: ignore[arg-type]
    return pool


def test_pick_prefers_the_least_outstanding_healthy_endpoint():
    pool = _pool(("a:1", True, 3), ("b:1", True, 1), ("c:1", False, 0))
    assert pool.pick(set()).url == "b:1"
    assert pool.pick({"b:1"}).url == "a:1"  # the failover target: never the down one while one is up


def test_pick_rotates_between_equal_endpoints_and_never_repeats_a_tried_one():
    pool = _pool(("a:1", True, 0), ("b:1", True, 0))
    assert {pool.pick(set()).url for _ in range(4)} == {"a:1", "b:1"}
    assert pool.pick({"a:1", "b:1"}) is None


def test_when_all_are_down_the_longest_down_is_tried():
    pool = _pool(("a:1", False, 0), ("b:1", False, 0))
    pool.endpoints["b:1"].changed_at -= 10
    assert pool.pick(set()).url == "b:1"


def test_triton_urls_replace_the_single_url(monkeypatch):
    assert GatewaySettings(triton_url="t:8001").triton_endpoints() == ["t:8001"]
    monkeypatch.setenv("STRATEGIST_TRITON_URLS", "a:8001, b:8001,a:8001")
    assert GatewaySettings().triton_endpoints() == ["a:8001", "b:8001"]


@pytest.mark.parametrize("value", ["a:8001,", "grpc://a:8001", "a", "a:0", "a:http"])
def test_bad_triton_urls_name_the_setting(value):
    with pytest.raises(ValueError, match="triton_urls"):
        GatewaySettings(triton_urls=value)
