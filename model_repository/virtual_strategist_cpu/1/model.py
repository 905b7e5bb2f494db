"""Triton Python-backend model: ONNX Runtime (CPU) over the exported Virtual Strategist graph.

This file is copied to `<repository>/virtual_strategist_cpu/<version>/model.py` by
`export.repository`; it must stay self-contained (numpy, onnxruntime and Triton's
`triton_python_backend_utils` only), because Triton's stub process imports it on its own.

Batching: Triton's dynamic batcher hands `execute` several requests at once; their inputs are
concatenated along the batch axis and ONNX Runtime runs once, then the outputs are split back per
request. Each request may itself carry a batch (max_batch_size > 0), so the split uses each
request's own batch size.

Settings come from config.pbtxt `parameters`:
    onnx_file         file name inside the version directory (default model.onnx)
    intra_op_threads  ORT threads; 0 = the CPUs this process may run on
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class TritonPythonModel:
    """One instance per Triton model instance (each its own stub process)."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.input_names = [spec["name"] for spec in config["input"]]
        self.output_names = [spec["name"] for spec in config["output"]]
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        onnx_path = os.path.join(
            args["model_repository"], str(args["model_version"]), params.get("onnx_file", "model.onnx")
        )
        if not os.path.exists(onnx_path):
            raise pb_utils.TritonModelException(
                f"{onnx_path} not found: build it with `strategist export --target cpu`"
            )
        threads = int(params.get("intra_op_threads", "0")) or _available_cpus()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle ORT threads would spin and take CPU from the gateway sharing this machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in self.session.get_inputs()]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if sorted(graph_inputs) != sorted(self.input_names) or sorted(graph_outputs) != sorted(
            self.output_names
        ):
            raise pb_utils.TritonModelException(
                f"{onnx_path} has inputs {graph_inputs} / outputs {graph_outputs}, "
                f"config.pbtxt declares {self.input_names} / {self.output_names}"
            )

    def _read_request(self, request) -> list[np.ndarray]:
        arrays = []
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input '{name}' missing from the request")
            arrays.append(np.asarray(tensor.as_numpy(), dtype=np.float32))
        batch = arrays[0].shape[0]
        for name, array in zip(self.input_names, arrays, strict=True):
            if array.shape[0] != batch:
                raise ValueError(
                    f"input '{name}' has batch {array.shape[0]}, '{self.input_names[0]}' {batch}"
                )
        return arrays

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        accepted: list[int] = []
        per_input: list[list[np.ndarray]] = [[] for _ in self.input_names]
        for index, request in enumerate(requests):
            try:
                arrays = self._read_request(request)
            except ValueError as exc:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(str(exc))
                )
                continue
            accepted.append(index)
            for store, array in zip(per_input, arrays, strict=True):
                store.append(array)
        if not accepted:
            return responses

        # One ORT run for every accepted request: inputs [sum of batches, ...].
        feeds = {
            name: np.concatenate(parts, axis=0)
            for name, parts in zip(self.input_names, per_input, strict=True)
        }
        sizes = [parts.shape[0] for parts in per_input[0]]
        try:
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # ORT raises its own exception types; every request gets the message
            error = pb_utils.TritonError(f"ONNX Runtime failed on a batch of {sum(sizes)}: {exc}")
            for index in accepted:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
            return responses

        offsets = np.cumsum([0, *sizes])
        for position, index in enumerate(accepted):
            start, stop = offsets[position], offsets[position + 1]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(output[start:stop], dtype=np.float32))
                for name, output in zip(self.output_names, outputs, strict=True)
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.session = None
