"""`strategist triton`: run the local Triton Inference Server (bundled binary) in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from strategist.paths import MODEL_REPOSITORY_DIR

    parser = subparsers.add_parser(
        "triton",
        help="serve the model repository with a local Triton (no Docker, no GPU)",
        description="Start tritonserver from the nvidia-pytriton wheel on the CPU model; Ctrl-C stops it.",
    )
    parser.add_argument("--repo", type=Path, default=MODEL_REPOSITORY_DIR, help="Triton model repository")
    parser.add_argument("--model", action="append", default=None, help="model to load (repeatable)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--log", type=Path, default=None, help="server log file (default: a temporary folder)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from strategist.serving.triton_launcher import DEFAULT_MODELS, LocalTriton

    models = tuple(args.model or DEFAULT_MODELS)
    onnx_missing = [m for m in models if m.endswith("_cpu") and not any((args.repo / m).glob("*/model.onnx"))]
    if onnx_missing:
        print(
            f"error: {args.repo}/{onnx_missing[0]} has no model.onnx: run `strategist export --target cpu` first"
        )
        return 1
    triton = LocalTriton(
        args.repo,
        model_names=models,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_path=args.log,
    )
    triton.start(timeout_s=args.timeout)
    print(f"Triton ready: gRPC {triton.grpc_url}, HTTP {triton.http_url}, metrics {triton.metrics_url}")
    print(f"models {', '.join(models)}; log {triton.log_path}; Ctrl-C stops")
    try:
        code = triton.wait()
        print(f"tritonserver exited with code {code}; log {triton.log_path}")
        return 1
    except KeyboardInterrupt:
        print("stopping Triton")
        return 0
    finally:
        triton.stop()
