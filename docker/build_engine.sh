#!/usr/bin/env bash
# Compile the TensorRT FP16 engine of the GPU model inside NVIDIA's TensorRT container, which must be
# the SAME release (YY.MM) as the Triton container that serves it: an engine only loads on the
# TensorRT version and GPU architecture it was built with.
#
# Input:  $MODEL_REPOSITORY/virtual_strategist/1/model.onnx, else the CPU model's ONNX
#         ($MODEL_REPOSITORY/virtual_strategist_cpu/1/model.onnx, written by `strategist export`).
# Output: $MODEL_REPOSITORY/virtual_strategist/1/model.plan (skipped when newer than its ONNX).
# The profile's max batch is read from virtual_strategist/config.pbtxt so the two never disagree.
set -euo pipefail

REPO="${MODEL_REPOSITORY:-/models}"
MODEL_DIR="$REPO/virtual_strategist"
CONFIG="$MODEL_DIR/config.pbtxt"
PLAN="$MODEL_DIR/1/model.plan"
OPT_BATCH="${OPT_BATCH:-32}"

ONNX="$MODEL_DIR/1/model.onnx"
[ -f "$ONNX" ] || ONNX="$REPO/virtual_strategist_cpu/1/model.onnx"
if [ ! -f "$ONNX" ]; then
    echo "build_engine: no ONNX found (looked for $MODEL_DIR/1/model.onnx and $ONNX)." >&2
    echo "build_engine: run 'strategist export --target cpu' (or 'strategist serve' once) on the host first." >&2
    exit 1
fi
if [ ! -f "$CONFIG" ]; then
    echo "build_engine: $CONFIG missing: run 'strategist export' on the host first." >&2
    exit 1
fi
MAX_BATCH="$(sed -n 's/^max_batch_size: *\([0-9][0-9]*\).*/\1/p' "$CONFIG" | head -n 1)"
if [ -z "$MAX_BATCH" ]; then
    echo "build_engine: no max_batch_size in $CONFIG" >&2
    exit 1
fi
[ "$OPT_BATCH" -le "$MAX_BATCH" ] || OPT_BATCH="$MAX_BATCH"

if [ -f "$PLAN" ] && [ "$PLAN" -nt "$ONNX" ] && [ -z "${FORCE_REBUILD:-}" ]; then
    echo "build_engine: $PLAN is newer than $ONNX, keeping it (FORCE_REBUILD=1 to rebuild)."
    exit 0
fi

shape() { echo "telemetry:${1}x5x100x5,tactical:${1}x2x2"; }
mkdir -p "$MODEL_DIR/1"
echo "build_engine: $ONNX -> $PLAN (FP16, batch 1/${OPT_BATCH}/${MAX_BATCH})"
# --fp16 lets TensorRT pick FP16 kernels; opset-17 LayerNormalization becomes a normalization layer
# that TensorRT computes in FP32 by itself. I/O stays FP32, as config.pbtxt declares.
trtexec \
    --onnx="$ONNX" \
    --saveEngine="$PLAN.tmp" \
    --fp16 \
    --minShapes="$(shape 1)" \
    --optShapes="$(shape "$OPT_BATCH")" \
    --maxShapes="$(shape "$MAX_BATCH")" \
    --skipInference
mv "$PLAN.tmp" "$PLAN"
echo "build_engine: done ($(du -h "$PLAN" | cut -f1))"
