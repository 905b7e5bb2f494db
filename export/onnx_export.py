"""PyTorch -> ONNX with the tensor contract's names and a dynamic batch axis, plus the checks that
prove the file is what Triton and TensorRT expect.

The exporter used is torch's TorchScript-based one (`dynamo=False`): it needs no extra package
(onnxscript), names the inputs/outputs as given and keeps `dynamic_axes` dynamic. The example batch
is >= 2 all the same, so no exporter can specialise the batch dimension to 1.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from strategist import contract
from strategist.errors import StrategistError

MIN_OPSET = 17  # LayerNormalization is one ONNX op from 17 on: TensorRT keeps it in FP32 by itself
DEFAULT_OPSET = 17
OUTPUT_NAMES: tuple[str, ...] = (contract.OUTPUT_PACE, contract.OUTPUT_RISK, contract.OUTPUT_TIRE)
BATCH_AXIS_NAME = "batch"
ONNX_PARITY_ATOL = 1e-4  # PyTorch FP32 eager vs ONNX Runtime FP32, max abs diff on any output


class ExportError(StrategistError):
    """An exported graph that breaks the tensor contract, or a parity check that failed."""


@contextlib.contextmanager
def _export_mode() -> Iterator[None]:
    """Disable the fused nn.TransformerEncoderLayer fast path while exporting.

    In eval mode it runs `aten::_transformer_encoder_layer_fwd`, which has no ONNX translation.
    """
    import torch

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def model_input_names(model) -> tuple[str, ...]:
    """The inputs `model` reads, in forward() order: its ModelConfig's input_names (two or three)."""
    config = getattr(model, "model_config", None)
    if config is None:
        raise ExportError(f"{type(model).__name__} has no model_config: cannot tell which inputs it reads")
    return tuple(config.input_names)


def export_onnx(model, onnx_path: Path, *, opset: int = DEFAULT_OPSET, example_batch: int = 4) -> Path:
    """Write `model` -> 3 outputs to `onnx_path`, with the model's inputs (ModelConfig.input_names:
    telemetry [B,5,100,5], tactical [B,2,2] and, for a context model, context [B,N_CONTEXT]) named
    as the contract says and a dynamic batch axis on each.

    The model is put in eval mode. Returns the path after `check_onnx` has passed.
    """
    import torch

    from export.sample_inputs import realistic_inputs

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: need >= {MIN_OPSET} for LayerNormalization")
    if example_batch < 2:
        raise ExportError(
            f"example batch {example_batch} would let the exporter fix the batch at 1; use >= 2"
        )
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    input_names = model_input_names(model)
    example = realistic_inputs(example_batch, input_names, seed=1)
    args = tuple(torch.from_numpy(example[name]) for name in input_names)  # forward() order
    dynamic_axes = {name: {0: BATCH_AXIS_NAME} for name in input_names + OUTPUT_NAMES}
    with torch.no_grad(), _export_mode(), warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; the choice is deliberate.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            args,
            str(onnx_path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    check_onnx(onnx_path, input_names=input_names)
    return onnx_path


@dataclass(frozen=True)
class OnnxSignature:
    """What a checked ONNX file exposes: per tensor its non-batch dims and ONNX element type."""

    opset: int
    inputs: dict[str, tuple[tuple[int, ...], int]] = field(default_factory=dict)
    outputs: dict[str, tuple[tuple[int, ...], int]] = field(default_factory=dict)


def _tensor_signature(value_info, where: str, path: Path) -> tuple[tuple[int, ...], int]:
    tensor_type = value_info.type.tensor_type
    dims = list(tensor_type.shape.dim)
    if not dims:
        raise ExportError(f"{path}: {where} '{value_info.name}' has no shape")
    if dims[0].HasField("dim_value"):
        raise ExportError(
            f"{path}: {where} '{value_info.name}' has a fixed batch dimension {dims[0].dim_value}; "
            "it must be dynamic (re-export with an example batch >= 2 and dynamic axes)"
        )
    rest = []
    for axis, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value"):
            raise ExportError(
                f"{path}: {where} '{value_info.name}' axis {axis} is dynamic; only batch may be"
            )
        rest.append(int(dim.dim_value))
    return tuple(rest), int(tensor_type.elem_type)


def read_signature(onnx_path: Path) -> OnnxSignature:
    """Names, non-batch dims and element types of an ONNX file's graph inputs and outputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxSignature(
        opset=opset,
        inputs={v.name: _tensor_signature(v, "input", onnx_path) for v in model.graph.input},
        outputs={v.name: _tensor_signature(v, "output", onnx_path) for v in model.graph.output},
    )


def check_onnx(onnx_path: Path, *, input_names: Sequence[str] | None = None) -> OnnxSignature:
    """ONNX checker + the tensor contract: names, FP32, shapes with one dynamic batch axis, opset.

    The graph's inputs must be one of the contract's layouts (contract.input_shapes: two inputs, or
    three with the context); `input_names`, when given, is the layout the model reads (its
    ModelConfig.input_names) and the graph must have exactly that. Raises ExportError naming the
    first tensor that differs.
    """
    import onnx

    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise ExportError(f"{onnx_path}: no such ONNX file")
    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{onnx_path}: ONNX checker rejected the graph: {exc}") from exc
    signature = read_signature(onnx_path)
    if signature.opset < MIN_OPSET:
        raise ExportError(f"{onnx_path}: opset {signature.opset} < {MIN_OPSET}")
    if input_names is not None and list(signature.inputs) != list(input_names):
        raise ExportError(
            f"{onnx_path}: inputs are {list(signature.inputs)}, the model reads {list(input_names)}"
        )
    try:
        expected_inputs = contract.input_shapes(list(signature.inputs))
    except ValueError as exc:
        raise ExportError(f"{onnx_path}: {exc}") from exc
    for where, expected, found in (
        ("input", expected_inputs, signature.inputs),
        ("output", contract.OUTPUT_SHAPES, signature.outputs),
    ):
        if list(found) != list(expected):
            raise ExportError(f"{onnx_path}: {where}s are {list(found)}, the contract says {list(expected)}")
        for name, dims in expected.items():
            found_dims, elem_type = found[name]
            if found_dims != dims:
                raise ExportError(
                    f"{onnx_path}: {where} '{name}' has dims [B, {found_dims}], contract [B, {dims}]"
                )
            if elem_type != onnx.TensorProto.FLOAT:
                raise ExportError(
                    f"{onnx_path}: {where} '{name}' is {onnx.TensorProto.DataType.Name(elem_type)}, "
                    "the contract says FLOAT (FP32)"
                )
    return signature


def ort_session(onnx_path: Path, *, threads: int = 0):
    """A CPU ONNX Runtime session; `threads` 0 lets ONNX Runtime size its pool to the machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: the CPU provider's notes are not news
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def session_input_names(session) -> tuple[str, ...]:
    """The graph inputs an ORT session takes, in graph order."""
    return tuple(i.name for i in session.get_inputs())


def run_ort(session, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(pace_quantiles, risk_probs, tire_health) as float32 arrays from an ORT session.

    `inputs` maps input names to arrays; the session takes the ones its graph has (so one mapping
    with a context feeds a two-input and a three-input graph alike) and a missing one is an error.
    """
    names = session_input_names(session)
    missing = [name for name in names if name not in inputs]
    if missing:
        raise ExportError(f"the ONNX graph needs input(s) {missing}; given {sorted(inputs)}")
    feeds = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in names}
    return tuple(np.asarray(out, dtype=np.float32) for out in session.run(list(OUTPUT_NAMES), feeds))


def run_torch(model, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The same three outputs from PyTorch eager FP32, fed the model's inputs by name."""
    import torch

    names = model_input_names(model)
    missing = [name for name in names if name not in inputs]
    if missing:
        raise ExportError(f"the model reads input(s) {missing}; given {sorted(inputs)}")
    with torch.no_grad():
        outputs = model.eval()(*(torch.from_numpy(np.asarray(inputs[name])) for name in names))
    return tuple(out.detach().cpu().numpy().astype(np.float32) for out in outputs)


@dataclass(frozen=True)
class OnnxParity:
    """Max abs difference PyTorch vs ONNX Runtime per batch size and output."""

    max_abs_diff: dict[int, dict[str, float]]
    atol: float

    @property
    def worst(self) -> float:
        return max(d for per_output in self.max_abs_diff.values() for d in per_output.values())

    @property
    def ok(self) -> bool:
        return self.worst <= self.atol


def check_onnx_parity(
    model,
    onnx_path: Path,
    batch_sizes: Sequence[int],
    *,
    atol: float = ONNX_PARITY_ATOL,
    seed: int = 0,
    session=None,
) -> OnnxParity:
    """Run PyTorch and ONNX Runtime on the same real-looking batches of the model's inputs (a context
    batch too for a context model); raise ExportError past `atol`."""
    from export.sample_inputs import realistic_inputs

    session = session or ort_session(onnx_path)
    input_names = model_input_names(model)
    diffs: dict[int, dict[str, float]] = {}
    for batch in batch_sizes:
        inputs = realistic_inputs(batch, input_names, seed=seed + batch)
        expected = run_torch(model, inputs)
        found = run_ort(session, inputs)
        diffs[batch] = {}
        for name, exp, got in zip(OUTPUT_NAMES, expected, found, strict=True):
            if exp.shape != got.shape:
                raise ExportError(
                    f"{onnx_path}: output '{name}' at batch {batch} is {got.shape}, torch {exp.shape}"
                )
            diffs[batch][name] = float(np.max(np.abs(exp - got)))
    parity = OnnxParity(max_abs_diff=diffs, atol=atol)
    if not parity.ok:
        raise ExportError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch by {parity.worst:.3g} > {atol}: {diffs}"
        )
    return parity
