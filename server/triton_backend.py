"""Triton over gRPC: one `tritonclient.grpc.aio` client, opened in the app lifespan and reused.

Availability errors (server down, model not loaded, deadline passed) become `BackendUnavailable`
(-> 503). The channel reconnects by itself; its reconnect back-off is capped at one second so the
gateway recovers within about a second of Triton coming back, instead of gRPC's default two minutes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from server.backend import BackendFailed, BackendUnavailable, ModelOutputs
from strategist import contract

log = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 2**31 - 1
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

    def __init__(self, url: str, model_name: str, model_version: str = "", timeout_s: float = 2.0,
                 readiness_timeout_s: float = 1.0) -> None:  # fmt: skip
        self.url = url
        self.model_name = model_name
        self.requested_version = model_version
        self.timeout_s = timeout_s
        self.readiness_timeout_s = readiness_timeout_s
        self._client: grpcclient.InferenceServerClient | None = None
        self._served_version: str | None = None
        self._input_names: tuple[str, ...] | None = None

    async def start(self) -> None:
        # Created inside the running loop: grpc.aio channels are bound to the loop they were made on.
        self._client = grpcclient.InferenceServerClient(
            url=self.url,
            channel_args=[
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        log.info("Triton backend: gRPC %s, model %r", self.url, self.model_name)

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            raise RuntimeError("TritonBackend.start() was not called (the app lifespan opens it)")
        return self._client

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
            result = await asyncio.wait_for(
                self.client.infer(
                    self.model_name,
                    tensors,
                    model_version=self.requested_version,
                    outputs=outputs,
                    client_timeout=self.timeout_s,
                ),
                timeout=self.timeout_s + 0.5,
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
        try:
            return bool(
                await asyncio.wait_for(
                    self.client.is_model_ready(
                        self.model_name, self.requested_version, client_timeout=self.readiness_timeout_s
                    ),
                    timeout=self.readiness_timeout_s + 0.5,
                )
            )
        except (InferenceServerException, asyncio.TimeoutError) as exc:
            log.debug("Triton not ready: %s", exc)
            return False

    async def _read_metadata(self) -> None:
        """Served version and input names from Triton's model metadata (asked once, then kept)."""
        try:
            metadata = await asyncio.wait_for(
                self.client.get_model_metadata(
                    self.model_name, self.requested_version, client_timeout=self.readiness_timeout_s
                ),
                timeout=self.readiness_timeout_s + 0.5,
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
        if self._client is not None:
            await self._client.close()
            self._client = None


def _translate(exc: InferenceServerException, what: str) -> Exception:
    status = str(exc.status())
    message = f"Triton {what} failed ({status}): {exc.message()}"
    if status in _UNAVAILABLE_CODES or status == "None":
        return BackendUnavailable(message)
    return BackendFailed(message)
