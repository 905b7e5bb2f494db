"""The tensor contract every stage keeps: Data Engine -> training -> ONNX/TensorRT -> Triton -> gateway.

Everything that has to agree between stages (names, shapes, channel order, encodings) is defined
here once and imported everywhere else. Change it here or nowhere.

Model inputs (physical units; normalisation happens inside the model):
    telemetry  float32 [B, 5, 100, 5]  laps [L, L-1, L-2, L-5, L_base] x 100 distance steps x CHANNELS
    tactical   float32 [B, 2, 2]       [car ahead, car behind] x [gap s, pace delta s]

Model outputs:
    pace_quantiles float32 [B, 3]  tau 0.1 / 0.5 / 0.9 of the next lap's *fuel-corrected* lap time,
                                   as a delta in seconds relative to the fuel-corrected time of lap L
                                   (the reference the request carries); non-decreasing along the last axis.
                                   seconds = fuel_corrected(L) + pace_quantiles.
    risk_probs     float32 [B, 3]  softmax over RISK_CLASSES
    tire_health    float32 [B, 1]  0 (dead) .. 1 (new)
"""

from __future__ import annotations

# --- lap stack -------------------------------------------------------------------------------
N_LAP_CONTEXT = 5
LAP_SLOTS: tuple[str, ...] = ("L", "L-1", "L-2", "L-5", "L_base")
# How many laps back each of the first four slots looks; L_base is chosen by a rule (see
# strategist.data.stack), not by an offset.
LAP_OFFSETS: tuple[int, ...] = (0, 1, 2, 5)

N_STEPS = 100  # distance-aligned micro-sectors per lap

# FastF1 car_data channel names and units, in tensor order.
CHANNELS: tuple[str, ...] = ("Speed", "Throttle", "Brake", "RPM", "nGear")
CHANNEL_UNITS: dict[str, str] = {
    "Speed": "km/h",
    "Throttle": "% (0-100)",
    "Brake": "0/1",
    "RPM": "1/min",
    "nGear": "gear (0-8)",
}
# Channels that must stay discrete after resampling (nearest / previous value, never interpolated).
DISCRETE_CHANNELS: frozenset[str] = frozenset({"Brake", "nGear"})

# --- tactical tensor -------------------------------------------------------------------------
TACTICAL_ROWS: tuple[str, ...] = ("ahead", "behind")
TACTICAL_COLS: tuple[str, ...] = ("gap_s", "pace_delta_s")
# "No car there" (leader has nobody ahead, last car nobody behind, or the gap is beyond any
# interaction): the gap is set to NO_CAR_GAP_S and the pace delta to 0. A large gap is what
# "free air" physically means, so the encoding needs no extra flag and is monotone for the model.
# Real gaps are clipped to the same value.
NO_CAR_GAP_S = 30.0
NO_CAR_PACE_DELTA_S = 0.0
MAX_ABS_PACE_DELTA_S = 30.0

# --- outputs ---------------------------------------------------------------------------------
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
RISK_CLASSES: tuple[str, ...] = ("none", "traffic_loss", "overtaken")
TRAFFIC_LOSS_THRESHOLD_S = 1.5

INPUT_TELEMETRY = "telemetry"
INPUT_TACTICAL = "tactical"
OUTPUT_PACE = "pace_quantiles"
OUTPUT_RISK = "risk_probs"
OUTPUT_TIRE = "tire_health"

# --- Triton model names ----------------------------------------------------------------------
# The names the model repository holds the two servings under and the gateway asks Triton for
# (STRATEGIST_MODEL_NAME). Generated configs (export.triton_config) and the local stack read them
# here; docker/compose.yaml spells GPU_MODEL_NAME out, checked by tests/docker/test_docker_compose.py.
GPU_MODEL_NAME = "virtual_strategist"  # TensorRT FP16 plan, KIND_GPU
CPU_MODEL_NAME = "virtual_strategist_cpu"  # Python backend running ONNX Runtime, KIND_CPU

INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    INPUT_TELEMETRY: (N_LAP_CONTEXT, N_STEPS, len(CHANNELS)),
    INPUT_TACTICAL: (len(TACTICAL_ROWS), len(TACTICAL_COLS)),
}
OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    OUTPUT_PACE: (len(QUANTILES),),
    OUTPUT_RISK: (len(RISK_CLASSES),),
    OUTPUT_TIRE: (1,),
}
