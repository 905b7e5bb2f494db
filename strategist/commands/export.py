"""`strategist export`: checkpoint -> ONNX -> Triton model repository (CPU model, TensorRT FP16 engine)."""

from __future__ import annotations

import argparse
from pathlib import Path

TARGETS = ("onnx", "cpu", "trt", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    from export.triton_config import (
        DEFAULT_MAX_BATCH,
        DEFAULT_OPT_BATCH,
        DEFAULT_QUEUE_DELAY_US,
        ServingSettings,
    )
    from strategist.contract import CPU_MODEL_NAME, GPU_MODEL_NAME
    from strategist.paths import MODEL_REPOSITORY_DIR, SERVED_CHECKPOINT_DIR

    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX / TensorRT and build the Triton model repository",
        description=(
            "onnx: write and check the FP32 ONNX (--onnx-out). cpu: the Python-backend ONNX Runtime model "
            f"({CPU_MODEL_NAME}) and both config.pbtxt. trt: the TensorRT FP16 engine "
            f"({GPU_MODEL_NAME}; needs TensorRT and a GPU). all: cpu then trt."
        ),
    )
    parser.add_argument("--target", choices=TARGETS, default="cpu")
    parser.add_argument("--checkpoint", type=Path, default=SERVED_CHECKPOINT_DIR, help="checkpoint folder")
    parser.add_argument("--repo", type=Path, default=MODEL_REPOSITORY_DIR, help="Triton model repository")
    parser.add_argument("--version", type=int, default=1, help="model version directory to write")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="Triton max_batch_size = TensorRT profile max",
    )
    parser.add_argument(
        "--opt-batch", type=int, default=DEFAULT_OPT_BATCH, help="TensorRT profile optimum batch"
    )
    parser.add_argument(
        "--queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US, help="dynamic batcher max queue delay"
    )
    parser.add_argument(
        "--preferred-batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="batch sizes the dynamic batcher forms without waiting out the queue delay (default none)",
    )
    parser.add_argument(
        "--instances", type=int, default=1, help="model instances (CPU: processes; GPU: per GPU)"
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=ServingSettings.cpu_intra_op_threads,
        help="ORT intra-op threads of the CPU model (0 = all CPUs; default: ServingSettings')",
    )
    parser.add_argument(
        "--onnx-out", type=Path, default=Path("artifacts/export/model.onnx"), help="for --target onnx"
    )
    parser.add_argument(
        "--stacks", type=Path, default=None, help="dataset folder whose stacks the FP16 parity check uses"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export.repository import (
        build_cpu_repository,
        build_gpu_repository,
        export_checkpoint_onnx,
        load_model_for_export,
    )
    from export.tensorrt_build import TensorRTUnavailable
    from export.triton_config import ServingSettings

    settings = ServingSettings(
        max_batch_size=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes),
        cpu_instances=args.instances,
        gpu_instances=args.instances,
        cpu_intra_op_threads=args.cpu_threads,
    )
    if args.target == "onnx":
        model, _, _ = load_model_for_export(args.checkpoint)
        args.onnx_out.parent.mkdir(parents=True, exist_ok=True)
        parity = export_checkpoint_onnx(model, args.onnx_out, args.max_batch)
        print(
            f"ONNX written to {args.onnx_out}; max abs diff to PyTorch {parity.worst:.2e} (batches {list(parity.max_abs_diff)})"
        )
        return 0
    status = 0
    if args.target in ("cpu", "all"):
        built = build_cpu_repository(args.checkpoint, args.repo, settings=settings, version=args.version)
        print(f"{built.name}: {built.artefact} and {built.config_path} in {built.seconds:.1f} s")
    if args.target in ("trt", "all"):
        stacks = None
        if args.stacks is not None:
            from export.sample_inputs import dataset_batch
            from export.triton_config import checkpoint_input_names

            stacks = dataset_batch(args.stacks, 2048, checkpoint_input_names(args.checkpoint))
        try:
            built = build_gpu_repository(
                args.checkpoint,
                args.repo,
                settings=settings,
                version=args.version,
                opt_batch=args.opt_batch,
                parity_stacks=stacks,
            )
        except TensorRTUnavailable as exc:
            print(f"error: target trt not built: {exc}")
            return 1
        fp16_parity = built.details["fp16_parity"]
        print(f"{built.name}: {built.artefact} in {built.seconds:.1f} s; FP16 parity {fp16_parity}")
    return status
