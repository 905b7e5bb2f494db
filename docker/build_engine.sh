#!/usr/bin/env bash
# Compile the TensorRT FP16 engine of the GPU model inside NVIDIA's TensorRT container, which must be
# the SAME release (YY.MM) as the Triton container that serves it: an engine only loads on the
# TensorRT version and GPU architecture it was built with.
#
# Input:  $MODEL_REPOSITORY/virtual_strategist/1/model.onnx, the mixed-precision ONNX written on the
#         host by docker/prepare_engine_onnx.py (FP16 compute, FP32 I/O, LayerNorm/Softmax/heads FP32).
#         The precisions are in the graph, so the build is strongly typed: no --fp16 guessing here.
# Output: $MODEL_REPOSITORY/virtual_strategist/1/model.plan (kept when newer than its ONNX).
# The profile's max batch is read from virtual_strategist/config.pbtxt so the two never disagree.
set -euo pipefail

REPO="${MODEL_REPOSITORY:-/models}"
MODEL_DIR="$REPO/virtual_strategist"
CONFIG="$MODEL_DIR/config.pbtxt"
ONNX="$MODEL_DIR/1/model.onnx"
PLAN="$MODEL_DIR/1/model.plan"
OPT_BATCH="${OPT_BATCH:-32}"

if [ ! -f "$CONFIG" ]; then
    echo "build_engine: $CONFIG missing: run 'strategist export --target cpu' on the host first." >&2
    exit 1
fi
if [ ! -f "$ONNX" ]; then
    echo "build_engine: $ONNX missing: run 'python docker/prepare_engine_onnx.py' on the host first." >&2
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
echo "build_engine: $ONNX -> $PLAN (strongly typed FP16, batch 1/${OPT_BATCH}/${MAX_BATCH})"
trtexec \
    --onnx="$ONNX" \
    --saveEngine="$PLAN.tmp" \
    --stronglyTyped \
    --minShapes="$(shape 1)" \
    --optShapes="$(shape "$OPT_BATCH")" \
    --maxShapes="$(shape "$MAX_BATCH")" \
    --skipInference
mv "$PLAN.tmp" "$PLAN"  # Triton never sees a half-written engine
echo "build_engine: done ($(du -h "$PLAN" | cut -f1))"
