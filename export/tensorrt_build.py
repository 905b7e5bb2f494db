"""TensorRT FP16 engine: build one per target GPU with one optimisation profile, and run it for parity.

Two TensorRT generations are handled:
- TensorRT 10 (weakly typed builder available): parse the FP32 ONNX, set BuilderFlag.FP16 and pin
  LayerNorm / softmax / the heads to FP32 with precision constraints;
- TensorRT 11 (FP16 flag removed; networks are strongly typed): convert the ONNX to mixed
  precision first (export.mixed_precision: FP16 compute, FP32 I/O, LayerNorm, softmax and heads
  in FP32) and build with NetworkDefinitionCreationFlag.STRONGLY_TYPED.

An engine only loads on the TensorRT version and GPU architecture it was built with: build it where
(or in the container release with which) Triton will serve it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.mixed_precision import HEAD_SCOPES, convert_to_mixed_precision
from export.onnx_export import OUTPUT_NAMES, ExportError
from strategist import contract
from strategist.errors import StrategistError


class TensorRTUnavailable(StrategistError):
    """No TensorRT Python package, or no CUDA GPU to build on."""


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): TensorRT importable and a CUDA GPU visible."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, "TensorRT is not installed (pip install tensorrt; GPU machines only)"
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        return False, f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible"
    return True, f"TensorRT {trt.__version__}, GPU {torch.cuda.get_device_name(0)}"


@dataclass(frozen=True)
class EngineProfile:
    """One optimisation profile over the batch axis; max must equal Triton's max_batch_size."""

    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 128

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ExportError(
                f"profile needs 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    @classmethod
    def for_max_batch(cls, max_batch: int, opt_batch: int = 32) -> EngineProfile:
        return cls(min_batch=1, opt_batch=min(opt_batch, max_batch), max_batch=max_batch)


@dataclass
class EngineBuildInfo:
    plan_path: str
    onnx_used: str
    tensorrt_version: str
    strongly_typed: bool
    gpu: str
    profile: dict[str, int]
    build_seconds: float


def _pin_fp32_layers(network, trt) -> int:
    """TensorRT 10 weak typing: keep normalisation, softmax and the heads in FP32; returns how many."""
    pinned = 0
    fp32_types = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in fp32_types or any(f"/{scope}/" in layer.name for scope in HEAD_SCOPES):
            layer.precision = trt.float32
            for out in range(layer.num_outputs):
                layer.set_output_type(out, trt.float32)
            pinned += 1
    return pinned


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    profile: EngineProfile,
    *,
    workspace_bytes: int = 2 << 30,
    work_dir: Path | None = None,
) -> EngineBuildInfo:
    """Build an FP16 engine from the FP32 ONNX file into `plan_path` (raises TensorRTUnavailable)."""
    usable, reason = tensorrt_status()
    if not usable:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt
    import torch

    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16") and int(trt.__version__.split(".")[0]) < 11
    onnx_used = Path(onnx_path)
    if weak_fp16:
        network = builder.create_network(0)
    else:
        work_dir = Path(work_dir or Path(plan_path).parent)
        onnx_used = convert_to_mixed_precision(onnx_path, work_dir / "model_fp16.onnx")
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_used)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_used}: TensorRT's ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        _pin_fp32_layers(network, trt)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    trt_profile = builder.create_optimization_profile()
    # One shape range per input the network has (the model's inputs: two, or three with a context).
    input_names = [network.get_input(i).name for i in range(network.num_inputs)]
    try:
        input_dims = contract.input_shapes(input_names)
    except ValueError as exc:
        raise ExportError(f"{onnx_used}: {exc}") from exc
    for name, dims in input_dims.items():
        trt_profile.set_shape(
            name, (profile.min_batch, *dims), (profile.opt_batch, *dims), (profile.max_batch, *dims)
        )
    config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_used} (see the TensorRT log above)")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    return EngineBuildInfo(
        plan_path=str(plan_path),
        onnx_used=str(onnx_used),
        tensorrt_version=trt.__version__,
        strongly_typed=not weak_fp16,
        gpu=torch.cuda.get_device_name(0),
        profile=asdict(profile),
        build_seconds=round(time.perf_counter() - started, 2),
    )


class EngineRunner:
    """Runs a serialized engine on the GPU with torch CUDA tensors as buffers (no pycuda needed)."""

    def __init__(self, plan_path: Path) -> None:
        usable, reason = tensorrt_status()
        if not usable:
            raise TensorRTUnavailable(reason)
        import tensorrt as trt

        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise ExportError(
                f"{plan_path}: TensorRT could not load the engine (other TensorRT version or GPU?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = tuple(
            name for name in names if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        )
        for name in self.input_names + OUTPUT_NAMES:
            if self.engine.get_tensor_dtype(name) != trt.float32:
                raise ExportError(
                    f"{plan_path}: tensor '{name}' is {self.engine.get_tensor_dtype(name)}, expected FP32"
                )

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """(pace_quantiles, risk_probs, tire_health) for the engine's inputs, taken from `inputs` by name."""
        import torch

        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ExportError(f"the engine needs input(s) {missing}; given {sorted(inputs)}")
        stream = torch.cuda.current_stream()
        keep_alive = []
        for name in self.input_names:
            tensor = torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32)).cuda()
            keep_alive.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            outputs.append(out)
            self.context.set_tensor_address(name, out.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        stream.synchronize()
        return tuple(out.cpu().numpy() for out in outputs)


def write_build_info(info: EngineBuildInfo, extra: dict[str, object], path: Path) -> None:
    Path(path).write_text(json.dumps({**asdict(info), **extra}, indent=2, default=str) + "\n")
