"""Load Triton directly over gRPC (tritonclient.grpc.aio), with the tensors the gateway would send.

Two shapes of load:
- `open_loop`: a fixed arrival rate, with the arrival pattern of the locust users (each of `users`
  senders at rate/users from a random phase), sent whether or not earlier requests have answered,
  to set against the gateway at the same rates;
- `closed_loop`: `concurrency` clients each sending the next request when the last one answered,
  the way perf_analyzer measures the dynamic batcher.
Each request builds its InferInput objects the way server/triton_backend.py does, so the client-side
cost per request is the gateway's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc.aio as grpcclient

from strategist import contract

OUTPUTS = (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE)
Tensors = dict[str, np.ndarray]  # the model's inputs by name (benchmarks.payloads.model_tensors), float32


@dataclass
class LoadResult:
    latency_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    measured_s: float = 0.0


async def _infer(client: grpcclient.InferenceServerClient, model: str, tensors: Tensors) -> None:
    inputs = []
    for name, array in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
    result = await client.infer(model, inputs, outputs=outputs, client_timeout=5.0)
    for name in OUTPUTS:  # decode like the gateway does
        result.as_numpy(name)


def arrival_times(rate: float, users: int, total_s: float, seed: int = 0) -> np.ndarray:
    """Send times (s from the start) of `users` senders, each at rate/users per second from a
    random phase: the same arrival pattern the locust users make (benchmarks/locustfile.py)."""
    period = users / rate
    phases = np.random.default_rng(seed).uniform(0.0, period, users)
    times = (phases[:, None] + period * np.arange(int(total_s / period) + 1)[None, :]).ravel()
    return np.sort(times[times < total_s])


async def open_loop(url: str, model: str, payloads: Sequence[Tensors], rate: float, duration_s: float,
                    warmup_s: float, users: int) -> LoadResult:  # fmt: skip
    """Fixed arrival rate for warmup_s + duration_s; only requests sent after the warm-up count."""
    result = LoadResult(measured_s=duration_s)
    client = grpcclient.InferenceServerClient(url)
    cycle = itertools.cycle(payloads)
    tasks: list[asyncio.Task[None]] = []

    async def one(tensors: Tensors, record: bool) -> None:
        start = time.perf_counter()
        try:
            await _infer(client, model, tensors)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever its kind
            if record:
                result.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        if record:
            result.latency_ms.append((time.perf_counter() - start) * 1e3)

    try:
        t0 = time.perf_counter()
        for offset in arrival_times(rate, users, warmup_s + duration_s):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(next(cycle), record=offset >= warmup_s)))
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return result


async def closed_loop(url: str, model: str, payloads: Sequence[Tensors], concurrency: int,
                      duration_s: float, warmup_s: float) -> LoadResult:  # fmt: skip
    """`concurrency` back-to-back clients for warmup_s + duration_s; latencies after the warm-up."""
    result = LoadResult(measured_s=duration_s)
    client = grpcclient.InferenceServerClient(url)
    t0 = time.perf_counter()
    record_from, stop_at = t0 + warmup_s, t0 + warmup_s + duration_s

    async def worker(offset: int) -> None:
        for tensors in itertools.islice(itertools.cycle(payloads), offset, None):
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                await _infer(client, model, tensors)
            except Exception as exc:  # noqa: BLE001
                if start >= record_from:
                    result.failures.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            if start >= record_from:
                result.latency_ms.append((time.perf_counter() - start) * 1e3)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await client.close()
    return result
