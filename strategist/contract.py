"""The tensor contract every stage keeps: Data Engine -> training -> ONNX/TensorRT -> Triton -> gateway.

Everything that has to agree between stages (names, shapes, channel order, encodings) is defined
here once and imported everywhere else. Change it here or nowhere.

Model inputs (physical units; normalisation happens inside the model):
    telemetry  float32 [B, 5, 100, 5]  laps [L, L-1, L-2, L-5, L_base] x 100 distance steps x CHANNELS
    tactical   float32 [B, 2, 2]       [car ahead, car behind] x [gap s, pace delta s]
    context    float32 [B, N_CONTEXT]  the timing the pit wall has (CONTEXT_FEATURES): per lap slot its
                                       exact fuel-corrected lap time relative to lap L, tyre life, stint
                                       lap, compound, track status and pit flags; race progress. Models
                                       built with ModelConfig.n_context = 0 (the two-input design) have
                                       no such input.

Model outputs:
    pace_quantiles float32 [B, 3]  tau 0.1 / 0.5 / 0.9 of the next lap's *fuel-corrected* lap time,
                                   as a delta in seconds relative to the fuel-corrected time of lap L
                                   (the reference the request carries); non-decreasing along the last axis.
                                   seconds = fuel_corrected(L) + pace_quantiles.
    risk_probs     float32 [B, 3]  softmax over RISK_CLASSES
    tire_health    float32 [B, 1]  0 (dead) .. 1 (new)
"""

from __future__ import annotations

from collections.abc import Sequence

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

# --- timing context ------------------------------------------------------------------------
# What the timing feed says about each lap of the stack (strategist.data.context builds it). One
# block of CONTEXT_SLOT_FEATURES per lap slot in LAP_SLOTS order, then CONTEXT_RACE_FEATURES.
# Encodings: times in s, ages in laps, flags 0/1; an unknown compound is all-zero one-hot; a lap
# without a usable time (none given, or a slot repeating the more recent slot's lap) has
# fc_delta_s 0 and lap_time_missing 1, so "missing" is never confused with "as fast as lap L".
COMPOUNDS: tuple[str, ...] = ("SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET")
# FastF1 TrackStatus digits: 1 green, 2 yellow, 4 SC, 5 red, 6 VSC deployed, 7 VSC ending.
TRACK_STATUS_FLAGS: dict[str, frozenset[str]] = {
    "yellow": frozenset("2"),
    "sc": frozenset("4"),
    "vsc": frozenset("67"),
    "red": frozenset("5"),
}
CONTEXT_SLOT_FEATURES: tuple[str, ...] = (
    "fc_delta_s",  # fuel-corrected lap time of this slot minus lap L's, s (0 for lap L itself)
    "lap_time_missing",
    "tyre_life",  # laps on this set of tyres at the end of the lap
    "stint_lap",  # laps into the stint (1 = out-lap)
    "same_stint",  # 1 when the lap is in lap L's stint
    "laps_back",  # lap L's number minus this lap's number
    *(f"compound_{c.lower()}" for c in COMPOUNDS),
    *(f"status_{name}" for name in TRACK_STATUS_FLAGS),
    "pit_in",
    "pit_out",
)
CONTEXT_RACE_FEATURES: tuple[str, ...] = ("race_progress",)  # lap L / race laps
CONTEXT_FEATURES: tuple[str, ...] = (
    *(f"{slot}.{name}" for slot in LAP_SLOTS for name in CONTEXT_SLOT_FEATURES),
    *CONTEXT_RACE_FEATURES,
)
N_CONTEXT = len(CONTEXT_FEATURES)

# --- normalisation statistics ----------------------------------------------------------------
# The dataset's statistics (strategist.data.dataset_format.compute_stats) become the model's input
# normalisation buffers (strategist.model.layers.InputNormalizer). A standard deviation or scale
# below STD_FLOOR marks a constant feature: it passes through centred, not divided by ~0.
STD_FLOOR = 1e-6

# --- outputs ---------------------------------------------------------------------------------
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
RISK_CLASSES: tuple[str, ...] = ("none", "traffic_loss", "overtaken")
TRAFFIC_LOSS_THRESHOLD_S = 1.5
# "In traffic": within this many seconds of the car ahead at the line at the end of lap L.
TRAFFIC_GAP_S = 1.5
# Groups of laps whose P10-P90 corridor is calibrated separately (models with a timing context),
# told apart from the inputs alone: "special" = lap L is an in/out-lap or neutralised, "traffic" =
# otherwise within TRAFFIC_GAP_S of the car ahead, "clean" = the rest.
CALIBRATION_GROUPS: tuple[str, ...] = ("clean", "traffic", "special")

INPUT_TELEMETRY = "telemetry"
INPUT_TACTICAL = "tactical"
INPUT_CONTEXT = "context"
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
    INPUT_CONTEXT: (N_CONTEXT,),
}
OUTPUT_SHAPES: dict[str, tuple[int, ...]] = {
    OUTPUT_PACE: (len(QUANTILES),),
    OUTPUT_RISK: (len(RISK_CLASSES),),
    OUTPUT_TIRE: (1,),
}


def input_shapes(names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Non-batch dims of a model's inputs, in the model's order (ModelConfig.input_names).

    A model reads a leading part of INPUT_SHAPES: telemetry and tactical, and the context when it
    has one. Raises ValueError naming what differs, so export and serving never build I/O for a
    layout no model has.
    """
    names = tuple(names)
    known = tuple(INPUT_SHAPES)
    if len(names) < 2 or names != known[: len(names)]:
        raise ValueError(
            f"model inputs {list(names)} are not a contract layout: expected {list(known[:2])} "
            f"or {list(known)} (strategist.contract.INPUT_SHAPES)"
        )
    return {name: INPUT_SHAPES[name] for name in names}
