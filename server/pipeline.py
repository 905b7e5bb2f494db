"""preprocess -> predict -> postprocess: three separately timed steps, one backend call per HTTP request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from server.admission import check_deadline
from server.backend import InferenceBackend
from server.metrics import GatewayMetrics
from server.postprocess import postprocess
from server.preprocess import preprocess
from server.schemas import ModelInfo, Prediction, PredictRequest, StageTimings

log = logging.getLogger(__name__)

INLINE_PREPROCESS_MAX_CARS = 1  # up to this many cars, preprocess runs on the event loop (see predict)


@dataclass
class PipelineResult:
    predictions: list[Prediction]
    model: ModelInfo
    timing: StageTimings


class Predictor:
    """Owns the backend for the app's lifetime and runs the three stages for a list of cars."""

    def __init__(self, backend: InferenceBackend, metrics: GatewayMetrics, *, default_race_laps: int) -> None:
        self.backend = backend
        self.metrics = metrics
        self.default_race_laps = default_race_laps

    async def predict(self, requests: Sequence[PredictRequest], request_id: str) -> PipelineResult:
        # Which inputs the served model reads (asked once per backend, then kept): a context model
        # needs every lap's timing, a two-input model ignores it.
        input_names = await self.backend.input_names()
        t0 = time.perf_counter()
        # Alignment costs ~0.7 ms a car (benchmarks/README.md, parse_cost). For one car that is cheaper
        # inline than the thread hop: under load, asyncio.to_thread's handoff and GIL contention with
        # the event loop made the measured preprocess p50 rise from ~1 ms to 27 ms. A batch of
        # many cars would block the loop for several ms, so it still goes to a thread.
        if len(requests) <= INLINE_PREPROCESS_MAX_CARS:
            batch = preprocess(requests, default_race_laps=self.default_race_laps, input_names=input_names)
        else:
            batch = await asyncio.to_thread(
                preprocess, requests, default_race_laps=self.default_race_laps, input_names=input_names
            )
        t1 = time.perf_counter()
        # The client has given up by its deadline: don't make Triton compute an answer nobody reads.
        check_deadline("backend call")
        outputs = await self.backend.infer(batch.model_inputs(input_names))
        version = await self.backend.model_version()
        t2 = time.perf_counter()
        predictions = postprocess(batch, outputs)
        t3 = time.perf_counter()

        stages = {"preprocess": t1 - t0, "predict": t2 - t1, "postprocess": t3 - t2}
        for stage, seconds in stages.items():
            self.metrics.stage_latency.labels(stage=stage).observe(seconds)
        self.metrics.batch_rows.observe(batch.telemetry.shape[0])
        for kind, samples in batch.corrections.items():
            self.metrics.input_repairs.labels(kind=kind).inc(samples)
        timing = StageTimings(**{f"{stage}_ms": seconds * 1e3 for stage, seconds in stages.items()})
        log.debug(
            "request %s: %d car(s), preprocess %.2f ms, predict %.2f ms, postprocess %.2f ms",
            request_id,
            batch.n_cars,
            timing.preprocess_ms,
            timing.predict_ms,
            timing.postprocess_ms,
        )
        model = ModelInfo(name=self.backend.model_name, version=version, backend=self.backend.kind)
        return PipelineResult(predictions=predictions, model=model, timing=timing)
