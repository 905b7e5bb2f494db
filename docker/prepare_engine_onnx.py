"""Host-side step before `docker compose up`: the mixed-precision ONNX the engine is compiled from.

    .venv/bin/strategist export --target cpu                # FP32 ONNX + both config.pbtxt
    .venv/bin/python docker/prepare_engine_onnx.py          # -> model_repository/virtual_strategist/1/model.onnx

The FP16 policy is the project's (export.mixed_precision: FP16 compute, FP32 inputs/outputs,
LayerNorm, Softmax, input normalisation and heads in FP32), written into the graph so the TensorRT
container builds it strongly typed (`trtexec --stronglyTyped`) with no precision flags of its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from export.mixed_precision import convert_to_mixed_precision, precision_summary
from strategist.contract import CPU_MODEL_NAME, GPU_MODEL_NAME
from strategist.errors import StrategistError
from strategist.paths import MODEL_REPOSITORY_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=MODEL_REPOSITORY_DIR, help="Triton model repository")
    parser.add_argument("--version", default="1")
    args = parser.parse_args()
    source = args.repo / CPU_MODEL_NAME / args.version / "model.onnx"
    if not source.exists():
        raise StrategistError(f"{source} not found: run `strategist export --target cpu` first")
    target = convert_to_mixed_precision(source, args.repo / GPU_MODEL_NAME / args.version / "model.onnx")
    print(f"{target} written from {source}: {precision_summary(target)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
