"""Prometheus metrics of one gateway instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("preprocess", "predict", "postprocess")
# Gateway stages run in well under a millisecond to a few tens of ms; the buckets resolve both ends.
_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "strategist_requests_total",
            "Requests answered, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "strategist_request_errors_total",
            "Requests that failed, by endpoint and reason (validation, auth, too_large, unavailable, ...).",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "strategist_request_seconds",
            "End-to-end latency inside the gateway, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "strategist_stage_seconds",
            "Latency of one pipeline stage: preprocess (Data Engine), predict (backend call), postprocess.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Admission control (server/admission.py).
        self.in_flight = Gauge(
            "strategist_requests_in_flight",
            "Prediction requests admitted and not yet answered.",
            registry=self.registry,
        )
        self.queued = Gauge(
            "strategist_requests_queued",
            "Prediction requests waiting for one of the in-flight slots (their deadline running).",
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "strategist_event_loop_lag_seconds",
            "How late this worker's event loop runs a timer that is due (rises at once, falls "
            "gradually); over STRATEGIST_MAX_LOOP_LAG_MS no request waits for a slot.",
            registry=self.registry,
        )
        self.shed = Counter(
            "strategist_requests_shed_total",
            "Prediction requests refused or cut short on purpose, by reason: in_flight (429, every "
            "slot busy and the wait queue full or too slow), queue_wait (429, no slot came free within "
            "half the deadline), deadline (503, the request cannot be answered within its deadline), "
            "body_timeout (408).",
            ["reason"],
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "strategist_client_disconnects_total",
            "Prediction requests whose client left before the answer (not counted as requests or errors).",
            registry=self.registry,
        )
        self.input_repairs = Counter(
            "strategist_input_repairs_total",
            "Samples the Data Engine repaired instead of rejecting, by kind: throttle_clipped (the "
            "104 artefact), index_backstep_repaired (sub-decimetre distance noise).",
            ["kind"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "strategist_backend_batch_rows",
            "Rows sent to the backend per call (2 per car: as raced + clean air).",
            buckets=(2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        # One series per Triton endpoint (server/triton_pool.py), label `endpoint` = its host:port.
        self.triton_up = Gauge(
            "strategist_triton_endpoint_up",
            "1 while the Triton endpoint is in the pool's rotation (server and model ready), else 0.",
            ["endpoint"],
            registry=self.registry,
        )
        self.triton_outstanding = Gauge(
            "strategist_triton_endpoint_outstanding",
            "Inference calls in flight on the Triton endpoint (the pool sends to the fewest).",
            ["endpoint"],
            registry=self.registry,
        )
        self.triton_calls = Counter(
            "strategist_triton_endpoint_calls_total",
            "Inference calls per Triton endpoint and outcome: ok, unavailable (connection lost: "
            "failed over), error (an answer that is not about availability), timeout.",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.triton_transitions = Counter(
            "strategist_triton_endpoint_transitions_total",
            "Times the Triton endpoint left (state=down) or rejoined (state=up) the rotation.",
            ["endpoint", "state"],
            registry=self.registry,
        )
        self.triton_failovers = Counter(
            "strategist_triton_failovers_total",
            "Inference calls retried on another Triton endpoint after theirs became unavailable.",
            registry=self.registry,
        )
