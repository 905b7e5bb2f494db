"""Skips shared by the tests that need something this machine may lack, each with its reason."""

from __future__ import annotations

import functools

import pytest

from strategist.serving.triton_launcher import TritonLaunchError, find_tritonserver


@functools.cache
def triton_missing() -> str | None:
    """Why the bundled tritonserver cannot run here (None: it can)."""
    try:
        find_tritonserver()
    except TritonLaunchError as exc:
        return f"local Triton cannot run here: {exc}"
    return None


def skip_without_triton() -> None:
    """Inside a test or fixture: skip it, with the reason, where Triton cannot run."""
    reason = triton_missing()
    if reason is not None:
        pytest.skip(reason)


requires_triton = pytest.mark.skipif(triton_missing() is not None, reason=triton_missing() or "")


@functools.cache
def haproxy_missing() -> str | None:
    """Why the edge proxy cannot run here (None: it can)."""
    from strategist.serving.edge_proxy import EdgeProxyError, find_haproxy

    try:
        find_haproxy()
    except EdgeProxyError as exc:
        return str(exc)
    return None


requires_haproxy = pytest.mark.skipif(haproxy_missing() is not None, reason=haproxy_missing() or "")
