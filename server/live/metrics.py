"""Prometheus series of the race sessions, registered in the gateway's own registry (server.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.laps = Counter(
            "strategist_live_laps_total",
            "Laps taken into a race session (stored; repeats of a stored lap not counted).",
            ["session"],
            registry=registry,
        )
        self.rejected = Counter(
            "strategist_live_laps_rejected_total",
            "Laps a race session refused (bad lap or contradicting the stored ones).",
            ["session"],
            registry=registry,
        )
        self.predictions = Counter(
            "strategist_live_predictions_total",
            "Next-lap predictions made for a race session, revisions included.",
            ["session"],
            registry=registry,
        )
        self.hit_rate = Gauge(
            "strategist_live_corridor_hit_rate",
            "Share of judged laps whose measured time fell inside the predicted P10-P90 corridor.",
            ["session"],
            registry=registry,
        )
        self.judged = Gauge(
            "strategist_live_judged_laps",
            "Predicted laps of the session whose measured time has come in.",
            ["session"],
            registry=registry,
        )
