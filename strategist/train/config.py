"""TrainConfig: everything about a training run that is not the architecture (ModelConfig).

No torch here: the command line builds its defaults from these fields without loading the model.
FLAGS is the one spelling of config fields as `strategist train` flags; the CLI builds its parser
from it and plans (strategist.pipeline) print commands with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

LOSS_WEIGHTS = (1.0, 0.5, 2.0)  # pace pinball, risk cross-entropy, tire MSE


@dataclass
class TrainConfig:
    """Everything about a run that is not the architecture (that is ModelConfig)."""

    epochs: int = 10
    batch_size: int = 128  # per process; the global batch under torchrun is batch_size x world size
    lr: float = 3e-4
    weight_decay: float = 0.01  # on weight matrices only (not biases, norms, embeddings)
    warmup_frac: float = 0.02  # linear warm-up over this share of all steps, then cosine to min_lr_frac x lr
    min_lr_frac: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0
    loss_weights: tuple[float, float, float] = LOSS_WEIGHTS  # pinball, cross-entropy, tire MSE
    max_minutes: float | None = None  # stop (and checkpoint) once a run has trained this long
    max_steps_per_epoch: int | None = None  # cap, for smoke runs and throughput measurements
    freeze_stem: bool = False  # fine-tuning: the CNN stem keeps its pre-trained weights
    # The heads and the timing-context encoder learn this many times faster than the trunk: when a
    # pre-trained checkpoint gains the timing context, those start fresh while the trunk only adapts.
    head_lr_scale: float = 1.0
    init_from: str | None = None  # checkpoint folder whose weights (and architecture) start the run
    resume: bool = False  # continue <out>/last
    device: str = "auto"  # auto | cpu | cuda
    # CPU threads per process (None: torch's default). On a shared CPU, 1 thread per process is
    # steadier and often faster than 2: OpenMP threads that wait for a busy core stall every op.
    threads: int | None = None
    amp: bool = True  # bf16 autocast where the device supports it (CUDA with bf16); off on CPU
    val_batch_size: int = 512
    progress: bool = True  # tqdm bars (main process only)
    tensorboard: bool = False


# ModelConfig fields a new model's architecture can be set with (strategist.model.config).
ARCH_FIELDS = (
    "d_model",
    "n_layers",
    "n_heads",
    "n_fusion_heads",
    "d_ff",
    "head_hidden",
    "dropout",
    "stem_channels",
    "n_context",  # 0: the two-input design (telemetry and tactical only)
)

# `strategist train` flag -> TrainConfig field, for the fields that have a flag of their own.
# --no-amp / --no-progress are the negations of amp / progress.
TRAIN_FLAGS = {
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--weight-decay": "weight_decay",
    "--grad-clip": "grad_clip",
    "--seed": "seed",
    "--loss-weights": "loss_weights",
    "--max-minutes": "max_minutes",
    "--max-steps-per-epoch": "max_steps_per_epoch",
    "--device": "device",
    "--threads": "threads",
    "--init-from": "init_from",
    "--freeze-stem": "freeze_stem",
    "--head-lr-scale": "head_lr_scale",
    "--resume": "resume",
    "--tensorboard": "tensorboard",
}
NEGATED_FLAGS = {"--no-amp": "amp", "--no-progress": "progress"}
ARCH_FLAGS = {"--" + name.replace("_", "-"): name for name in ARCH_FIELDS}


def field_default(name: str) -> Any:
    """The default of TrainConfig field `name` (the CLI's defaults come from here)."""
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    return field.default


def config_args(tcfg: TrainConfig, arch: dict[str, Any] | None = None, impl: str | None = None) -> list[str]:
    """`strategist train` arguments that rebuild `tcfg` (and architecture values `arch`, the
    implementation `impl`), only those that differ from the defaults, in flag order."""
    out: list[str] = [f"--impl={impl}"] if impl else []
    for flag, name in TRAIN_FLAGS.items():
        value, default = getattr(tcfg, name), field_default(name)
        if value == default:
            continue
        if isinstance(value, bool):
            out.append(flag)
        elif isinstance(value, (tuple, list)):
            out += [flag, *map(str, value)]
        else:
            out.append(f"{flag}={value}")
    out += [flag for flag, name in NEGATED_FLAGS.items() if not getattr(tcfg, name)]
    for flag, name in ARCH_FLAGS.items():
        if arch and arch.get(name) is not None:
            value = arch[name]
            out += [flag, *map(str, value)] if isinstance(value, (tuple, list)) else [f"{flag}={value}"]
    return out
