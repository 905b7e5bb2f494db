"""A stand-in for Triton's triton_python_backend_utils, to run the Python-backend model without Triton."""

from __future__ import annotations

import types


def fake_pb_utils() -> types.ModuleType:
    """The slice of triton_python_backend_utils that model.py uses, in plain Python."""
    module = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, array

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceRequest:
        def __init__(self, tensors):
            self.tensors = {t.name(): t for t in tensors}

    class TritonError:
        def __init__(self, message):
            self._message = message

        def message(self):
            return self._message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonModelException(Exception):
        pass

    module.Tensor, module.InferenceRequest, module.TritonError = Tensor, InferenceRequest, TritonError
    module.InferenceResponse, module.TritonModelException = InferenceResponse, TritonModelException
    module.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)
    return module
