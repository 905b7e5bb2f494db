"""FP32 ONNX -> mixed-precision ONNX: FP16 compute, FP32 where FP16 is risky, FP32 inputs/outputs.

TensorRT 11 builds strongly typed networks only (the FP16 builder flag is gone), so FP16 has to be
in the ONNX already. What stays FP32, and why:

- graph inputs/outputs (`keep_io_types`): Triton's config and every client keep TYPE_FP32;
- the input normalisation (everything between a graph input and the first Conv/MatMul/Gemm):
  raw RPM ~12000 has an FP16 resolution of 8, i.e. ~0.004 std after normalising, for nothing;
- LayerNormalization (variance overflow in FP16), Softmax (exp range), and the numerically
  touchy element-wise ops in the tail (Softplus, Sigmoid, Exp, Log, CumSum);
- the heads and everything after them (`head_scopes`: pace / risk / tire MLPs, quantile
  ordering, de-normalisation to seconds, softmax, sigmoid): a few thousand FLOPs, and it is where an
  FP16 rounding would be visible in the answer.

The pass is our own (onnxconverter_common's converter mistypes graph outputs produced by a blocked
node when keeping FP32 I/O): every node is visited in topological order and given FP16 or FP32;
a Cast is inserted wherever a tensor crosses precisions (one per tensor and direction), and FP16
copies of the weights replace FP32 ones where only FP16 nodes read them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

from export.onnx_export import ExportError, check_onnx

FP32_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "Softplus",
    "Sigmoid",
    "Exp",
    "Log",
    "CumSum",
    "ReduceMean",  # mean over lap tokens is a sum then divide: keep the sum wide
)
HEAD_SCOPES: tuple[str, ...] = ("pace_head", "pace_head_special", "risk_head", "tire_head")
# Ops through which the input normalisation prefix extends (before the first heavy op).
_PREFIX_OPS = frozenset(
    {
        "Sub",
        "Div",
        "Mul",
        "Add",
        "Clip",
        "Reshape",
        "Transpose",
        "Unsqueeze",
        "Squeeze",
        "Flatten",
        "Identity",
    }
)


def _consumers(graph) -> dict[str, list]:
    by_input: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            by_input.setdefault(name, []).append(node)
    return by_input


def input_prefix_nodes(graph) -> set[str]:
    """Names of nodes between the graph inputs and the first non-element-wise op (the normaliser)."""
    consumers = _consumers(graph)
    keep: set[str] = set()
    queue = deque(i.name for i in graph.input)
    while queue:
        for node in consumers.get(queue.popleft(), []):
            if node.op_type in _PREFIX_OPS and node.name not in keep:
                keep.add(node.name)
                queue.extend(node.output)
    return keep


def head_and_tail_nodes(graph, head_scopes: Iterable[str] = HEAD_SCOPES) -> set[str]:
    """Nodes inside a head scope (`/pace_head/...`) and every node downstream of one."""
    scopes = tuple(head_scopes)
    consumers = _consumers(graph)
    keep = {n.name for n in graph.node if any(f"/{scope}/" in n.name for scope in scopes)}
    if not keep:
        raise ExportError(
            f"no node of the heads {list(scopes)} found in the graph: cannot keep the heads in FP32 "
            "(were the head modules renamed? pass head_scopes)"
        )
    queue = deque(out for n in graph.node if n.name in keep for out in n.output)
    while queue:
        for node in consumers.get(queue.popleft(), []):
            if node.name not in keep:
                keep.add(node.name)
                queue.extend(node.output)
    return keep


def _name_unnamed_nodes(graph) -> None:
    # The block rules work by node name; give anonymous nodes stable, unique ones.
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"


# Ops that run in FP16 unless a block rule says otherwise: the heavy compute and simple arithmetic.
FP16_OPS = frozenset(
    {
        "Conv",
        "MatMul",
        "Gemm",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Erf",
        "Tanh",
        "Relu",
        "Gelu",
        "Sqrt",
        "Pow",
        "Neg",
    }
)
# Data-movement ops: they compute nothing, so their output takes the type of their data input.
PASS_THROUGH_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Unsqueeze",
        "Squeeze",
        "Flatten",
        "Identity",
        "Concat",
        "Slice",
        "Gather",
        "Split",
        "Expand",
        "Tile",
    }
)


def _float_tensors(model) -> set[str]:
    """Names of every FP32 tensor in the graph (inputs, initializers, intermediates, outputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            floats.add(value.name)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    floats.add(node.output[0])
    return floats


class _Caster:
    """Rewrites a graph node by node (in topological order), inserting Casts at precision changes."""

    def __init__(self, model, floats: set[str]) -> None:
        import onnx

        self.onnx = onnx
        self.graph = model.graph
        self.floats = floats
        self.dtype: dict[str, int] = {
            name: onnx.TensorProto.FLOAT for name in floats
        }  # current type of each float tensor
        self.initializers = {init.name: init for init in self.graph.initializer}
        self.casts: dict[tuple[str, int], str] = {}  # (tensor, to) -> cast output, one Cast per pair
        self.new_nodes: list = []

    def as_type(self, name: str, to: int) -> str:
        """`name` as a tensor of type `to`: itself, an FP16 copy of an initializer, or a Cast output."""
        if name not in self.floats or self.dtype[name] == to:
            return name
        key = (name, to)
        if key in self.casts:
            return self.casts[key]
        suffix = "fp16" if to == self.onnx.TensorProto.FLOAT16 else "fp32"
        cast_name = f"{name}__{suffix}"
        if name in self.initializers and to == self.onnx.TensorProto.FLOAT16:
            import numpy as np
            from onnx import numpy_helper

            # Weights beyond FP16's range are clipped to it rather than turned into inf.
            values = np.clip(numpy_helper.to_array(self.initializers[name]), -65504.0, 65504.0).astype(
                np.float16
            )
            self.graph.initializer.append(numpy_helper.from_array(values, name=cast_name))
        else:
            self.new_nodes.append(
                self.onnx.helper.make_node("Cast", [name], [cast_name], name=f"Cast_{cast_name}", to=to)
            )
        self.dtype[cast_name] = to
        self.floats.add(cast_name)
        self.casts[key] = cast_name
        return cast_name

    def visit(self, node, keep_fp32: bool) -> None:
        fp16: int = self.onnx.TensorProto.FLOAT16
        fp32: int = self.onnx.TensorProto.FLOAT
        float_inputs = [name for name in node.input if name in self.floats]
        if keep_fp32 or not float_inputs:
            target = fp32
        elif node.op_type in PASS_THROUGH_OPS:
            target = self.dtype[float_inputs[0]]
        elif node.op_type in FP16_OPS:
            target = fp16
        else:
            target = fp32  # an op this pass does not know: the safe choice
        for index, name in enumerate(node.input):
            if name in self.floats:
                node.input[index] = self.as_type(name, target)
        if node.op_type != "Constant":
            for name in node.output:
                if name in self.floats:
                    self.dtype[name] = target
        self.new_nodes.append(node)

    def finish(self) -> None:
        """Cast FP16 graph outputs back to FP32 under their own names."""
        for output in self.graph.output:
            if self.dtype.get(output.name) == self.onnx.TensorProto.FLOAT16:
                inner = f"{output.name}__fp16"
                for node in self.new_nodes:
                    node.output[:] = [inner if o == output.name else o for o in node.output]
                    node.input[:] = [inner if i == output.name else i for i in node.input]
                self.new_nodes.append(
                    self.onnx.helper.make_node(
                        "Cast",
                        [inner],
                        [output.name],
                        name=f"Cast_{output.name}",
                        to=self.onnx.TensorProto.FLOAT,
                    )
                )
        del self.graph.node[:]
        self.graph.node.extend(self.new_nodes)
        del self.graph.value_info[:]  # types changed: let inference redo them
        used = {name for node in self.graph.node for name in node.input}
        unused = [init for init in self.graph.initializer if init.name not in used]
        for init in unused:
            self.graph.initializer.remove(init)


def convert_to_mixed_precision(
    onnx_in: Path,
    onnx_out: Path,
    *,
    fp32_ops: Iterable[str] = FP32_OPS,
    head_scopes: Iterable[str] = HEAD_SCOPES,
) -> Path:
    """Write the FP16-compute / FP32-I/O version of `onnx_in` to `onnx_out`; returns `onnx_out`.

    The result passes the ONNX checker and the tensor-contract check (FP32 inputs and outputs).
    """
    import onnx

    model = onnx.load(str(onnx_in))
    _name_unnamed_nodes(model.graph)
    keep_fp32 = input_prefix_nodes(model.graph) | head_and_tail_nodes(model.graph, head_scopes)
    fp32_op_types = set(fp32_ops)
    caster = _Caster(model, _float_tensors(model))
    for node in list(model.graph.node):
        is_blocked = node.name in keep_fp32 or node.op_type in fp32_op_types
        caster.visit(node, keep_fp32=is_blocked)
    caster.finish()
    onnx_out = Path(onnx_out)
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(onnx_out))
    check_onnx(onnx_out)
    return onnx_out


def precision_summary(onnx_path: Path) -> dict[str, int]:
    """How many float initializers are FP16 and FP32, and how many Cast nodes the graph has."""
    import onnx

    model = onnx.load(str(onnx_path))
    summary = {"fp16_initializers": 0, "fp32_initializers": 0, "casts": 0}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            summary["fp16_initializers"] += 1
        elif init.data_type == onnx.TensorProto.FLOAT:
            summary["fp32_initializers"] += 1
    summary["casts"] = sum(1 for node in model.graph.node if node.op_type == "Cast")
    return summary
