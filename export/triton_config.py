"""config.pbtxt for the two Triton models, generated from one place (the tensor contract plus
`ServingSettings`), and the check that a config agrees with an ONNX file.

    virtual_strategist      GPU: TensorRT FP16 plan (platform tensorrt_plan), KIND_GPU
    virtual_strategist_cpu  CPU: Python backend running ONNX Runtime on the same ONNX, KIND_CPU

Both share the tensor names and dims, max_batch_size (= the TensorRT profile's max), the dynamic
batcher, warmup and version policy, so a client cannot tell them apart except by speed. The inputs
are the model's own (ModelConfig.input_names: telemetry and tactical, plus context for a model that
reads the timing context), so a config is rendered for a checkpoint, not for a fixed input count:
`checkpoint_input_names` reads them from a checkpoint's config.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from strategist import contract
from strategist.contract import CPU_MODEL_NAME, GPU_MODEL_NAME
from strategist.errors import StrategistError

DEFAULT_MAX_BATCH = 128
DEFAULT_OPT_BATCH = 32
# 0: the batcher takes what is queued when the instance frees up, and under load the queue is full
# anyway. Measured on the CPU model with benchmarks.batcher_sweep (benchmarks/README.md): in two runs,
# 0 us kept its throughput from 16 to 256 clients (x1.15, x1.06) where 100 us lost 13 % and 25 %, and
# 0 us was ahead at 64 and 256 clients both times. Not measured on a GPU (the TensorRT model gets the
# same value; rerun the sweep there).
DEFAULT_QUEUE_DELAY_US = 0


class ConfigError(StrategistError):
    """A config.pbtxt that disagrees with the ONNX graph or the settings it was meant to carry."""


@dataclass(frozen=True)
class ServingSettings:
    """Tunables that end up in config.pbtxt."""

    max_batch_size: int = DEFAULT_MAX_BATCH  # = TensorRT profile max
    dynamic_batching: bool = True  # False: no batcher, each request runs alone (for comparisons)
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US  # dynamic batcher wait for a fuller batch
    # Batch sizes the batcher forms as soon as it can (without waiting out the queue delay); () = none,
    # it then forms the largest batch it has. Each size must be <= max_batch_size.
    preferred_batch_sizes: tuple[int, ...] = ()
    gpu_instances: int = 1  # one instance per GPU: the batcher alone keeps a small model busy
    cpu_instances: int = 1  # each Python-backend instance is its own process
    # ONNX Runtime threads per CPU instance. 1, not 0 (= every core): the gateway and Triton share few
    # cores, and a second intra-op thread mostly waits for a busy core. On the 2-core dev machine under
    # load (benchmarks/README.md) 1 thread used ~0.6 ms less Triton CPU per request and held 200 req/s
    # with a lower p99 than 0; on a machine with cores to spare, raise it.
    cpu_intra_op_threads: int = 1
    num_versions: int = 1  # serve the newest version only

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.queue_delay_us < 0:
            raise ConfigError(f"queue delay must be >= 0 us, got {self.queue_delay_us}")
        bad = [size for size in self.preferred_batch_sizes if not 1 <= size <= self.max_batch_size]
        if bad:
            raise ConfigError(f"preferred batch sizes must be 1..{self.max_batch_size}, got {bad}")
        for name in ("gpu_instances", "cpu_instances", "num_versions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cpu_intra_op_threads < 0:
            raise ConfigError(f"cpu_intra_op_threads must be >= 0, got {self.cpu_intra_op_threads}")


def _dims(dims: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor_block(kind: str, shapes: dict[str, tuple[int, ...]]) -> str:
    entries = [
        f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: {_dims(dims)}\n  }}'
        for name, dims in shapes.items()
    ]
    return f"{kind} [\n" + ",\n".join(entries) + "\n]"


def checkpoint_input_names(checkpoint_dir: Path) -> tuple[str, ...]:
    """The inputs the checkpoint's model reads (its config.json's ModelConfig.input_names)."""
    from strategist.model.checkpoint import read_model_config

    return read_model_config(Path(checkpoint_dir)).input_names


def _input_shapes(input_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    try:
        return contract.input_shapes(input_names)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _warmup_block(settings: ServingSettings, inputs: dict[str, tuple[int, ...]]) -> str:
    # Warm the smallest and the largest batch so neither first request pays lazy initialisation;
    # Triton reports the model ready only after warmup has run.
    sizes = sorted({1, settings.max_batch_size})
    blocks = []
    for size in sizes:
        warmup_inputs = "\n".join(
            f'    inputs {{\n      key: "{name}"\n      value: {{\n        data_type: TYPE_FP32\n'
            f"        dims: {_dims(dims)}\n        random_data: true\n      }}\n    }}"
            for name, dims in inputs.items()
        )
        blocks.append(
            f'  {{\n    name: "batch_{size}"\n    batch_size: {size}\n    count: 2\n{warmup_inputs}\n  }}'
        )
    return "model_warmup [\n" + ",\n".join(blocks) + "\n]"


def _common_blocks(settings: ServingSettings, inputs: dict[str, tuple[int, ...]]) -> list[str]:
    preferred = (
        f"  preferred_batch_size: [ {', '.join(map(str, settings.preferred_batch_sizes))} ]\n"
        if settings.preferred_batch_sizes
        else ""
    )
    batcher = f"dynamic_batching {{\n{preferred}  max_queue_delay_microseconds: {settings.queue_delay_us}\n}}"
    return [
        f"max_batch_size: {settings.max_batch_size}",
        _tensor_block("input", inputs),
        _tensor_block("output", contract.OUTPUT_SHAPES),
        *([batcher] if settings.dynamic_batching else []),
        f"version_policy: {{ latest: {{ num_versions: {settings.num_versions} }} }}",
    ]


HEADER = "# Generated by `strategist export` (export/triton_config.py): edit the generator, not this file.\n"


def render_gpu_config(settings: ServingSettings, input_names: Sequence[str]) -> str:
    """config.pbtxt of the TensorRT model reading `input_names`; the engine lives at <version>/model.plan."""
    inputs = _input_shapes(input_names)
    blocks = [
        f'name: "{GPU_MODEL_NAME}"',
        'platform: "tensorrt_plan"',
        'default_model_filename: "model.plan"',
        *_common_blocks(settings, inputs),
        f"instance_group [\n  {{\n    count: {settings.gpu_instances}\n    kind: KIND_GPU\n  }}\n]",
        _warmup_block(settings, inputs),
    ]
    return HEADER + "\n".join(blocks) + "\n"


def render_cpu_config(
    settings: ServingSettings, input_names: Sequence[str], name: str = CPU_MODEL_NAME
) -> str:
    """config.pbtxt of the Python-backend model running ONNX Runtime on <version>/model.onnx, reading
    `input_names`; `name` other than the default serves the same model a second time (e.g. batcher off)."""
    inputs = _input_shapes(input_names)
    parameters = {"onnx_file": "model.onnx", "intra_op_threads": str(settings.cpu_intra_op_threads)}
    param_blocks = "\n".join(
        f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}'
        for key, value in parameters.items()
    )
    blocks = [
        f'name: "{name}"',
        'backend: "python"',
        *_common_blocks(settings, inputs),
        f"instance_group [\n  {{\n    count: {settings.cpu_instances}\n    kind: KIND_CPU\n  }}\n]",
        param_blocks,
        _warmup_block(settings, inputs),
    ]
    return HEADER + "\n".join(blocks) + "\n"


def parse_config(text: str):
    """config.pbtxt text -> Triton's ModelConfig protobuf (raises ConfigError on a syntax error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"config.pbtxt does not parse: {exc}") from exc


def check_config_against_onnx(
    config_path: Path, onnx_path: Path, *, max_batch_size: int | None = None
) -> None:
    """Names, FP32 and dims of every input/output in config.pbtxt equal the ONNX graph's;
    max_batch_size equals `max_batch_size` (the TensorRT profile max) when given.

    Raises ConfigError naming the first disagreement.
    """
    from tritonclient.grpc import model_config_pb2

    from export.onnx_export import read_signature

    config = parse_config(Path(config_path).read_text())
    signature = read_signature(Path(onnx_path))
    if config.max_batch_size < 1:
        raise ConfigError(
            f"{config_path}: max_batch_size {config.max_batch_size}: the batch axis must be batched"
        )
    if max_batch_size is not None and config.max_batch_size != max_batch_size:
        raise ConfigError(
            f"{config_path}: max_batch_size {config.max_batch_size} differs from the profile max {max_batch_size}"
        )
    for kind, declared, graph in (
        ("input", config.input, signature.inputs),
        ("output", config.output, signature.outputs),
    ):
        declared_names = [t.name for t in declared]
        if sorted(declared_names) != sorted(graph):
            raise ConfigError(f"{config_path}: {kind}s {declared_names}, {onnx_path} has {list(graph)}")
        for tensor in declared:
            dims, _ = graph[tensor.name]
            if tuple(tensor.dims) != dims:
                raise ConfigError(
                    f"{config_path}: {kind} '{tensor.name}' dims {list(tensor.dims)}, {onnx_path} has {list(dims)}"
                )
            if tensor.data_type != model_config_pb2.TYPE_FP32:  # check_onnx holds the graph I/O to FP32
                raise ConfigError(f"{config_path}: {kind} '{tensor.name}' is not TYPE_FP32")
