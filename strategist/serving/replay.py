"""Replay a recorded race into a gateway race session (the engine of `strategist replay`).

Laps go in the order they finished (lap end time), each as the timing feed would post it
(strategist.serving.race_requests.live_lap). Pacing: lap k is sent when the wall clock has run
(lap end k - first lap end) / speed seconds. Laps the session already holds are skipped; network
errors and 503s are retried until `retry_s` runs out, so a gateway restart mid-replay costs time,
not laps (the session stores each lap once, a repeat is answered `duplicate`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from strategist.errors import StrategistError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class ReplayOptions:
    race: Path
    url: str = "http://127.0.0.1:8080"
    speed: float = 20.0
    max_lap: int | None = None
    session_id: str | None = None
    api_key: str | None = None
    timeout_s: float = 30.0
    retry_s: float = 60.0
    progress: bool = True


@dataclass
class ReplaySummary:
    session_id: str
    view_url: str
    sent: int = 0
    skipped: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    hit_rate: dict[str, Any] | None = None

    def text(self) -> str:
        lines = [
            f"session {self.session_id}: {self.sent} laps sent, {self.skipped} already stored, "
            f"{self.duplicates} repeats, {self.rejected} rejected, {self.retries} retries",
        ]
        if self.hit_rate and self.hit_rate.get("share") is not None:
            lines.append(
                f"corridor hit rate {self.hit_rate['share']:.1%} "
                f"({self.hit_rate['inside']} of {self.hit_rate['judged']} laps inside P10-P90)"
            )
        lines += [f"  rejected: {e}" for e in self.errors[:10]]
        lines.append(f"race view: {self.view_url}")
        return "\n".join(lines)


class Gateway:
    """The few calls a replay makes, each retried while the gateway is unreachable or 503."""

    def __init__(self, options: ReplayOptions, summary: ReplaySummary) -> None:
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self.client = httpx.Client(base_url=options.url, headers=headers, timeout=options.timeout_s)
        self.retry_s = options.retry_s
        self.summary = summary

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        deadline = time.monotonic() + self.retry_s
        wait = 0.2
        while True:
            try:
                response = self.client.request(method, path, json=body)
                if response.status_code not in RETRY_STATUSES:
                    return response
                why = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + wait > deadline:
                raise StrategistError(f"gateway {self.client.base_url} {method} {path}: {why}")
            self.summary.retries += 1
            log.warning("gateway not answering (%s), retrying in %.1f s", why, wait)
            time.sleep(wait)
            wait = min(wait * 2, 2.0)

    def close(self) -> None:
        self.client.close()


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise StrategistError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def replay(options: ReplayOptions) -> ReplaySummary:
    from tqdm import tqdm

    from strategist.data.context import driver_lap_timings
    from strategist.data.fastf1_reader import read_race
    from strategist.serving.race_requests import laps_in_finish_order, live_lap, session_body

    race = read_race(options.race)
    body = session_body(race, options.session_id)
    session_id = str(body["session_id"])
    summary = ReplaySummary(session_id=session_id, view_url=f"{options.url}/live/{session_id}")
    gateway = Gateway(options, summary)
    try:
        _check(gateway.call("POST", "/live/sessions", body), "creating the session")
        stored = _check(gateway.call("GET", f"/live/sessions/{session_id}/laps"), "reading the stored laps")
        have = {(s["car"], int(s["lap_number"])) for s in stored}
        order = laps_in_finish_order(race, options.max_lap)
        timings = {driver: driver_lap_timings(race.driver_laps(driver)) for driver in race.drivers}
        t0_race, t0_wall = (order[0][2] if order else 0.0), time.monotonic()
        bar = tqdm(order, desc=f"replay {session_id}", unit="lap", disable=not options.progress)
        for driver, lap, end_s in bar:
            if (driver, lap) in have:
                summary.skipped += 1
                continue
            if options.speed > 0:
                due = t0_wall + (end_s - t0_race) / options.speed
                time.sleep(max(0.0, due - time.monotonic()))
            payload = live_lap(race, driver, lap, timings[driver])
            response = gateway.call("POST", f"/live/sessions/{session_id}/laps", payload)
            if response.status_code in (409, 422):
                summary.rejected += 1
                summary.errors.append(f"{driver} lap {lap}: {response.text[:300]}")
                log.warning("%s lap %d rejected: %s", driver, lap, response.text[:300])
                continue
            answer = _check(response, f"{driver} lap {lap}")
            summary.sent += 1
            summary.duplicates += int(bool(answer.get("duplicate")))
            bar.set_postfix(lap=lap, car=driver)
        state = _check(gateway.call("GET", f"/live/sessions/{session_id}"), "reading the field")
        summary.hit_rate = state.get("hit_rate")
    finally:
        gateway.close()
    return summary
