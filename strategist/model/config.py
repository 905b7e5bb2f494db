"""ModelConfig: every hyperparameter of the Spatio-Temporal Interaction Transformer in one place.

The config is saved inside every checkpoint (config.json), so resume, fine-tuning and export
rebuild exactly the module that was trained. Defaults are the design values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from strategist import contract
from strategist.errors import StrategistError

IMPLEMENTATIONS = ("torch", "hf")
MODEL_TYPE = "virtual_strategist"  # config.json "model_type" of both implementations (transformers' key)
RACING_HEAD_INPUTS = ("timing", "pooled")


@dataclass
class ModelConfig:
    # Which implementation build_model() returns: "torch" (plain nn.Module, the exported one) or "hf"
    # (transformers PreTrainedModel whose lap transformer is a BertEncoder). Same maths, same weights
    # up to a key renaming (strategist.model.weight_mapping).
    impl: str = "torch"

    # --- input geometry (the tensor contract) ---
    n_lap_context: int = contract.N_LAP_CONTEXT  # lap slots [L, L-1, L-2, L-5, L_base]; hard constraint
    n_steps: int = contract.N_STEPS  # distance steps per lap
    n_channels: int = len(contract.CHANNELS)  # Speed, Throttle, Brake, RPM, nGear
    n_tactical_rows: int = len(contract.TACTICAL_ROWS)  # ahead, behind
    n_tactical_cols: int = len(contract.TACTICAL_COLS)  # gap_s, pace_delta_s

    # --- 1D-CNN stem (per lap, weights shared across laps) ---
    stem_channels: tuple[int, ...] = (16, 32, 64)
    stem_kernel: int = 5
    stem_stride: int = 2  # each conv halves the distance axis: 100 -> 50 -> 25 -> 13

    # --- lap transformer (self-attention across the lap tokens) ---
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024  # feed-forward width, 4 x d_model as in BERT
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5

    # --- tactical fusion (cross-attention: lap tokens query the ahead/behind tokens) ---
    n_fusion_heads: int = 8

    # --- lap-time features ---
    # The distance steps of a lap are evenly spaced, so mean(1 / Speed) over a lap is proportional to
    # its lap time. The log ratio of each stacked lap's value to lap L's (in percent, [B, N]) goes to
    # the heads next to the pooled tokens: the relative pace of the last laps is the strongest
    # single predictor of the next lap, and the attention layers would otherwise have to learn a
    # harmonic mean from normalised speeds. Checkpoints saved before this field existed load as False.
    lap_time_features: bool = True
    lap_time_min_speed_kmh: float = 10.0  # a standing car (pit box) must not make 1/Speed explode

    # --- timing context (third input) ---
    # Width of the context vector (contract.N_CONTEXT); 0 builds the two-input design that reads
    # telemetry and tactical only. With a context, each lap slot's block of timing features
    # (contract.CONTEXT_SLOT_FEATURES) is projected onto that slot's token before the lap
    # transformer (so attention knows an SC lap from a green one), and the whole vector, through a
    # small MLP, goes to the heads. Checkpoints saved before the context existed load as 0.
    n_context: int = contract.N_CONTEXT
    context_hidden: int = 128
    # Two pace heads, chosen per sample by lap L's own flags in the context: one for a green racing
    # lap L, one for an in/out-lap or a neutralised L. The next lap's delta is ~0.4 s after a green
    # lap and 20-60 s after a pit or SC lap; one head fitting both spends itself on the big jumps
    # and loses the racing laps the pit wall cares about (measured). Context models only (a
    # two-input model always has one pace head).
    split_pace_head: bool = True
    # What the racing-lap pace head reads (split_pace_head only): "timing" = the normalised context
    # and tactical tensor (TimingPaceHead; measured best on held-out real races), "pooled" = the same
    # pooled representation the other heads read.
    racing_head_inputs: str = "timing"

    # --- heads ---
    head_hidden: int = 128
    quantiles: tuple[float, ...] = contract.QUANTILES
    n_risk_classes: int = len(contract.RISK_CLASSES)

    def __post_init__(self) -> None:
        self.stem_channels = tuple(int(c) for c in self.stem_channels)
        # The split pace head tells the laps apart by the context's flags: two-input models have one.
        self.split_pace_head = bool(self.split_pace_head and self.n_context)
        self.quantiles = tuple(float(q) for q in self.quantiles)
        self.validate()

    def validate(self) -> None:
        """Raise StrategistError naming the field when the config cannot build a model."""
        problems: list[str] = []
        if self.impl not in IMPLEMENTATIONS:
            problems.append(f"impl {self.impl!r} is not one of {IMPLEMENTATIONS}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.d_model % self.n_fusion_heads:
            problems.append(
                f"d_model {self.d_model} is not divisible by n_fusion_heads {self.n_fusion_heads}"
            )
        if list(self.quantiles) != sorted(self.quantiles) or len(self.quantiles) != 3:
            problems.append(
                f"quantiles {self.quantiles} must be three increasing values (lower, median, upper)"
            )
        if not self.stem_channels:
            problems.append("stem_channels is empty")
        if self.n_lap_context < 1:
            problems.append(f"n_lap_context {self.n_lap_context} must be >= 1")
        if self.n_context not in (0, contract.N_CONTEXT):
            problems.append(
                f"n_context {self.n_context} must be 0 (two-input model) or {contract.N_CONTEXT} "
                "(strategist.contract.CONTEXT_FEATURES)"
            )
        if self.racing_head_inputs not in RACING_HEAD_INPUTS:
            problems.append(
                f"racing_head_inputs {self.racing_head_inputs!r} is not one of {RACING_HEAD_INPUTS}"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout {self.dropout} must be in [0, 1)")
        if problems:
            raise StrategistError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def head_in_features(self) -> int:
        """Width of what the heads read: [token of lap L, mean token] (+ lap-time ratios) (+ context)."""
        return (
            2 * self.d_model
            + (self.n_lap_context if self.lap_time_features else 0)
            + (self.context_hidden if self.n_context else 0)
        )

    @property
    def n_calibration_groups(self) -> int:
        """Corridor calibration groups (contract.CALIBRATION_GROUPS) with a context, else one for all."""
        return len(contract.CALIBRATION_GROUPS) if self.n_context else 1

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's inputs in forward() order (contract names): two, or three with a context."""
        names = (contract.INPUT_TELEMETRY, contract.INPUT_TACTICAL)
        return (*names, contract.INPUT_CONTEXT) if self.n_context else names

    @property
    def n_context_slot_features(self) -> int:
        """Per-slot block width of the context vector (the rest are race-level features)."""
        return len(contract.CONTEXT_SLOT_FEATURES)

    @property
    def stem_out_steps(self) -> int:
        """Length of the distance axis after the stem (each conv: ceil(n / stride) with 'same' padding)."""
        n = self.n_steps
        for _ in self.stem_channels:
            n = (n + 2 * (self.stem_kernel // 2) - self.stem_kernel) // self.stem_stride + 1
        return n

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (config.json); unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StrategistError(
                f"ModelConfig: unknown field(s) {unknown}; known fields are {sorted(known)}"
            )
        # Checkpoints written before the lap-time features existed were built without them.
        # Likewise for the timing context: they are two-input models.
        data = {
            "lap_time_features": False,
            "n_context": 0,
            "split_pace_head": False,
            "racing_head_inputs": "pooled",
            **data,
        }
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
