"""ONNX Runtime in-process: the fallback where the Triton binary cannot run.

Runs the very ONNX file the Triton CPU repository serves, so answers match Triton's. Session runs go
to a worker thread (`asyncio.to_thread`) so the event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from server.backend import BackendFailed, BackendUnavailable, ModelOutputs
from strategist import contract

log = logging.getLogger(__name__)


class OnnxRuntimeBackend:
    kind = "onnxruntime"

    def __init__(self, onnx_file: Path, model_name: str, timeout_s: float = 2.0, threads: int = 1) -> None:
        self.onnx_file = Path(onnx_file)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.threads = threads
        self._session: Any = None
        self._input_names: tuple[str, ...] = ()

    async def start(self) -> None:
        if not self.onnx_file.exists():
            raise FileNotFoundError(
                f"ONNX model {self.onnx_file} not found: build it with `strategist export --target cpu` "
                "or set STRATEGIST_ONNX_PATH"
            )
        self._session = await asyncio.to_thread(self._open_session)
        self._input_names = tuple(i.name for i in self._session.get_inputs())
        log.info(
            "ONNX Runtime backend (in-process): %s, inputs %s, %d thread(s)",
            self.onnx_file,
            list(self._input_names),
            self.threads,
        )

    def _open_session(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # No spinning: on a small machine idle spin-waits steal CPU from the gateway's own event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])
        try:
            contract.input_shapes([i.name for i in session.get_inputs()])
        except ValueError as exc:
            raise BackendFailed(f"{self.onnx_file}: {exc}") from exc
        return session

    async def input_names(self) -> tuple[str, ...]:
        if self._session is None:
            raise BackendUnavailable("the ONNX Runtime session is not open")
        return self._input_names

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> ModelOutputs:
        if self._session is None:
            raise BackendUnavailable("the ONNX Runtime session is not open")
        missing = [name for name in self._input_names if name not in inputs]
        if missing:
            raise BackendFailed(
                f"{self.onnx_file}: the model needs input(s) {missing}, given {sorted(inputs)}"
            )
        feeds = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self._input_names}
        try:
            pace, risk, tire = await asyncio.wait_for(
                asyncio.to_thread(self._run, feeds), timeout=self.timeout_s
            )
        except asyncio.TimeoutError as exc:
            raise BackendUnavailable(f"ONNX Runtime did not answer within {self.timeout_s:g} s") from exc
        return ModelOutputs(pace_quantiles=pace, risk_probs=risk, tire_health=tire)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            outputs: list[np.ndarray] = self._session.run(
                [contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE], feeds
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendFailed(f"ONNX Runtime failed: {exc}") from exc
        return outputs

    async def is_ready(self) -> bool:
        return self._session is not None

    async def model_version(self) -> str:
        folder = self.onnx_file.parent.name
        return folder if folder.isdigit() else "onnx"

    async def close(self) -> None:
        self._session = None
