"""The one small interface between the gateway and whatever runs the model.

Two implementations: `TritonBackend` (Triton over gRPC, the normal path) and `OnnxRuntimeBackend`
(the same ONNX in-process, the documented fallback where the Triton binary cannot run). Both take
and return the contract's named tensors, whole batches at a time, and say which inputs the served
model reads (two, or three with the timing context), so the gateway builds what that model needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from strategist import contract


class BackendUnavailable(Exception):
    """The model could not answer in time (down, not ready, deadline passed): the gateway answers 503."""


class BackendFailed(Exception):
    """The model server answered with an error that is not about availability: the gateway answers 502."""


@dataclass(frozen=True)
class ModelOutputs:
    """The contract's outputs for B rows: pace [B,3], risk [B,3], tire [B,1], all float32."""

    pace_quantiles: np.ndarray
    risk_probs: np.ndarray
    tire_health: np.ndarray

    def __post_init__(self) -> None:
        rows = self.pace_quantiles.shape[0]
        for name, array in (
            (contract.OUTPUT_PACE, self.pace_quantiles),
            (contract.OUTPUT_RISK, self.risk_probs),
            (contract.OUTPUT_TIRE, self.tire_health),
        ):
            expected = (rows, *contract.OUTPUT_SHAPES[name])
            if array.shape != expected:
                raise BackendFailed(f"model output {name} has shape {array.shape}, expected {expected}")


class InferenceBackend(Protocol):
    """What the gateway needs from a model runner."""

    kind: str  # "triton" or "onnxruntime": reported in responses and logs
    model_name: str

    async def start(self) -> None:
        """Open connections / sessions. Must not fail when the model server is down (readiness says so)."""

    async def input_names(self) -> tuple[str, ...]:
        """The served model's inputs in its order (contract names; contract.input_shapes holds)."""
        ...

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> ModelOutputs:
        """The model's inputs by name (telemetry float32 [B,5,100,5], tactical [B,2,2], context
        [B,N_CONTEXT] for a context model) -> outputs for the B rows."""
        ...

    async def is_ready(self) -> bool:
        """True when a call to infer() would be answered now."""
        ...

    async def model_version(self) -> str:
        """The version that answers (Triton's served version, or the ONNX file's version folder)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ReportsEndpoints(Protocol):
    """A backend spread over several model servers (Triton's pool): /readyz lists their states."""

    def endpoint_states(self) -> list[dict[str, object]]: ...
