"""`strategist train`: pre-train, fine-tune or resume the Spatio-Temporal Interaction Transformer.

    strategist train --train data/sim-train --val data/sim-val --out runs/base --epochs 10
    strategist train --train data/real-train --val data/real-val --out runs/ft \
        --init-from runs/base/best --freeze-stem --lr 1e-5
    strategist train ... --resume                       # continue runs/<out>/last
    torchrun --nproc_per_node 2 -m strategist.cli train ...  # DDP (gloo on CPU, nccl on GPU)
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from strategist import contract

if TYPE_CHECKING:
    from strategist.train.config import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the model (pre-training, fine-tuning, resume; DDP under torchrun)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    """The options of `strategist train`; defaults are TrainConfig's (strategist/train/config.py).

    data=False leaves out --train/--val/--out (for parsing training options passed through
    another command, e.g. `strategist reproduce --train-arg`)."""
    from strategist.train.config import field_default as d

    if data:
        group = parser.add_argument_group("data and output")
        group.add_argument(
            "--train", required=True, help="training dataset folder (manifest.json + shard-*.npz)"
        )
        group.add_argument("--val", required=True, help="validation dataset folder (held-out races)")
        group.add_argument("--out", required=True, help="run folder: last/, best/, metrics.jsonl")

    run_group = parser.add_argument_group("optimisation")
    run_group.add_argument("--epochs", type=int, default=d("epochs"))
    run_group.add_argument("--batch-size", type=int, default=d("batch_size"), help="per process")
    run_group.add_argument(
        "--lr", type=float, default=d("lr"), help="peak AdamW learning rate (fine-tuning: 1e-5)"
    )
    run_group.add_argument("--weight-decay", type=float, default=d("weight_decay"))
    run_group.add_argument(
        "--grad-clip", type=float, default=d("grad_clip"), help="max gradient norm (0: off)"
    )
    run_group.add_argument("--seed", type=int, default=d("seed"))
    run_group.add_argument(
        "--loss-weights",
        type=float,
        nargs=3,
        default=list(d("loss_weights")),
        metavar=("PINBALL", "CE", "MSE"),
        help="joint-loss weights",
    )
    run_group.add_argument(
        "--max-minutes", type=float, default=d("max_minutes"), help="stop and checkpoint after this long"
    )
    run_group.add_argument(
        "--max-steps-per-epoch",
        type=int,
        default=d("max_steps_per_epoch"),
        help="cap steps per epoch (smoke runs)",
    )
    run_group.add_argument("--device", default=d("device"), help="auto | cpu | cuda")
    run_group.add_argument(
        "--threads",
        type=int,
        default=d("threads"),
        help="CPU threads per process (shared CPU: 1 is steadiest)",
    )
    run_group.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bars")
    run_group.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard")

    start = parser.add_argument_group("starting point")
    start.add_argument("--init-from", default=None, help="checkpoint folder to start from (fine-tuning)")
    start.add_argument("--freeze-stem", action="store_true", help="keep the CNN stem's weights fixed")
    start.add_argument(
        "--head-lr-scale",
        type=float,
        default=d("head_lr_scale"),
        help="heads and timing-context encoder learn this many times faster than the trunk",
    )
    start.add_argument(
        "--resume", action="store_true", help="continue <out>/last (optimizer and scheduler too)"
    )

    arch = parser.add_argument_group("architecture (new models only; defaults are the design values)")
    arch.add_argument(
        "--impl",
        choices=["torch", "hf"],
        default=None,
        help="implementation (default torch; with --init-from, the checkpoint's)",
    )
    arch.add_argument("--d-model", type=int)
    arch.add_argument("--n-layers", type=int)
    arch.add_argument("--n-heads", type=int)
    arch.add_argument("--n-fusion-heads", type=int)
    arch.add_argument("--d-ff", type=int)
    arch.add_argument("--head-hidden", type=int)
    arch.add_argument("--dropout", type=float)
    arch.add_argument(
        "--n-context",
        type=int,
        help=f"timing-context width: {contract.N_CONTEXT} "
        "(default) or 0 for the two-input design (telemetry and tactical only)",
    )
    arch.add_argument("--stem-channels", type=int, nargs="+")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed options (TRAIN_FLAGS / NEGATED_FLAGS: the one flag -> field map)."""
    from strategist.train.config import NEGATED_FLAGS, TRAIN_FLAGS, TrainConfig

    values = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in TRAIN_FLAGS.items()}
    values |= {name: not getattr(args, flag[2:].replace("-", "_")) for flag, name in NEGATED_FLAGS.items()}
    values["loss_weights"] = tuple(values["loss_weights"])
    return TrainConfig(**values)


def architecture(args: argparse.Namespace) -> dict[str, Any]:
    """The architecture options given (ModelConfig field -> value)."""
    from strategist.train.config import ARCH_FLAGS

    values = {name: getattr(args, name) for name in ARCH_FLAGS.values() if getattr(args, name) is not None}
    if "stem_channels" in values:
        values["stem_channels"] = tuple(values["stem_channels"])
    return values


def run(args: argparse.Namespace) -> int:
    from strategist.train import distributed
    from strategist.train.loop import model_config, setup_logging, train

    setup_logging()
    rank = int(os.environ.get("RANK", "0"))
    tcfg = train_config(args)
    model_cfg = model_config(tcfg, architecture(args), impl=args.impl)
    summary = train(args.train, args.val, args.out, model_cfg, tcfg)
    if rank == 0:
        print(json.dumps(summary, indent=2))
    distributed.exit_finished_worker()  # under torchrun: no interpreter shutdown (see there)
    return 0
