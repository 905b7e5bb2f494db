"""Triton over gRPC: one or several Triton endpoints (server/triton_pool.py), opened in the app lifespan.

Availability errors (every endpoint down, model not loaded, deadline passed) become
`BackendUnavailable` (-> 503); other Triton errors `BackendFailed` (-> 502). A call whose Triton
dies is retried once on another endpoint by the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from server.backend import BackendFailed, BackendUnavailable, ModelOutputs
from server.metrics import GatewayMetrics
from server.triton_pool import Discovery, TritonPool
from strategist import contract

log = logging.getLogger(__name__)

# gRPC status codes that mean "not available now" rather than "your request is wrong".
_UNAVAILABLE_CODES = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.CANCELLED",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.NOT_FOUND",  # model not loaded (yet)
    "StatusCode.UNKNOWN",
}
_OUTPUT_NAMES = (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE)


class TritonBackend:
    kind = "triton"

    def __init__(
        self,
        urls: str | Sequence[str],
        model_name: str,
        model_version: str = "",
        timeout_s: float = 2.0,
        readiness_timeout_s: float = 1.0,
        discovery: Discovery = "static",
        probe_interval_s: float = 0.5,
        resolve_interval_s: float = 5.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.model_name = model_name
        self.requested_version = model_version
        self.timeout_s = timeout_s
        self.readiness_timeout_s = readiness_timeout_s
        # No channel is opened here: the pool's clients are made in start(), inside the running loop
        # (grpc.aio channels are bound to the loop they were made on).
        self.pool = TritonPool(
            self.urls,
            model_name,
            model_version,
            probe_timeout_s=readiness_timeout_s,
            probe_interval_s=probe_interval_s,
            discovery=discovery,
            resolve_interval_s=resolve_interval_s,
            metrics=metrics,
        )
        self._served_version: str | None = None
        self._input_names: tuple[str, ...] | None = None

    async def start(self) -> None:
        await self.pool.start()

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> ModelOutputs:
        names = await self.input_names()
        missing = [name for name in names if name not in inputs]
        if missing:
            raise BackendFailed(f"model {self.model_name!r} needs input(s) {missing}, given {sorted(inputs)}")
        tensors = []
        for name in names:
            array = np.ascontiguousarray(inputs[name], dtype=np.float32)
            tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in _OUTPUT_NAMES]
        try:
            # The gRPC deadline is the real limit; wait_for is a backstop should the channel stall.
            result = await self.pool.call(
                lambda client, seconds_left: asyncio.wait_for(
                    client.infer(
                        self.model_name,
                        tensors,
                        model_version=self.requested_version,
                        outputs=outputs,
                        client_timeout=seconds_left,
                    ),
                    timeout=seconds_left + 0.5,
                ),
                self.timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise BackendUnavailable(f"Triton did not answer within {self.timeout_s:g} s") from exc
        except InferenceServerException as exc:
            raise _translate(exc, f"inference on model {self.model_name!r}") from exc
        arrays = {}
        for name in _OUTPUT_NAMES:
            array = result.as_numpy(name)
            if array is None:
                raise BackendFailed(f"Triton's answer lacks output {name!r}")
            arrays[name] = array
        return ModelOutputs(
            pace_quantiles=arrays[contract.OUTPUT_PACE],
            risk_probs=arrays[contract.OUTPUT_RISK],
            tire_health=arrays[contract.OUTPUT_TIRE],
        )

    async def is_ready(self) -> bool:
        """At least one endpoint answers server-ready and model-ready now (probed on the spot)."""
        return await self.pool.probe_all()

    def endpoint_states(self) -> list[dict[str, object]]:
        """Per-endpoint state for /readyz: url, up, outstanding calls, seconds in that state."""
        return self.pool.states()

    async def _read_metadata(self) -> None:
        """Served version and input names from Triton's model metadata (asked once, then kept)."""
        try:
            metadata = await self.pool.call(
                lambda client, seconds_left: asyncio.wait_for(
                    client.get_model_metadata(
                        self.model_name, self.requested_version, client_timeout=seconds_left
                    ),
                    timeout=seconds_left + 0.5,
                ),
                self.readiness_timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise BackendUnavailable("Triton did not return the model metadata in time") from exc
        except InferenceServerException as exc:
            raise _translate(exc, f"metadata of model {self.model_name!r}") from exc
        names = tuple(tensor.name for tensor in metadata.inputs)
        try:
            contract.input_shapes(names)
        except ValueError as exc:
            raise BackendFailed(f"Triton model {self.model_name!r}: {exc}") from exc
        versions = sorted(metadata.versions, key=lambda v: int(v) if v.isdigit() else -1)
        self._served_version = self.requested_version or (versions[-1] if versions else "unknown")
        self._input_names = names

    async def input_names(self) -> tuple[str, ...]:
        if self._input_names is None:
            await self._read_metadata()
        assert self._input_names is not None
        return self._input_names

    async def model_version(self) -> str:
        if self._served_version is None:
            await self._read_metadata()
        assert self._served_version is not None
        return self._served_version

    async def close(self) -> None:
        await self.pool.close()


def _translate(exc: InferenceServerException, what: str) -> Exception:
    status = str(exc.status())
    message = f"Triton {what} failed ({status}): {exc.message()}"
    if status in _UNAVAILABLE_CODES or status == "None":
        return BackendUnavailable(message)
    return BackendFailed(message)
