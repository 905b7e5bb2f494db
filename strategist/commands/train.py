"""`strategist train`: pre-train, fine-tune or resume the Spatio-Temporal Interaction Transformer.

    strategist train --train data/sim-train --val data/sim-val --out runs/base --epochs 10
    strategist train --train data/real-train --val data/real-val --out runs/ft \
        --init-from runs/base/best --freeze-stem --lr 1e-5
    strategist train ... --resume                       # continue runs/<out>/last
    torchrun --nproc_per_node 2 -m strategist.train ...  # DDP (gloo on CPU, nccl on GPU)
"""

from __future__ import annotations

import argparse
import json
import logging
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the model (pre-training, fine-tuning, resume; DDP under torchrun)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data and output")
    data.add_argument("--train", required=True, help="training dataset folder (manifest.json + shard-*.npz)")
    data.add_argument("--val", required=True, help="validation dataset folder (held-out races)")
    data.add_argument("--out", required=True, help="run folder: last/, best/, metrics.jsonl")

    run_group = parser.add_argument_group("optimisation")
    run_group.add_argument("--epochs", type=int, default=10)
    run_group.add_argument("--batch-size", type=int, default=128, help="per process")
    run_group.add_argument(
        "--lr", type=float, default=3e-4, help="peak AdamW learning rate (fine-tuning: 1e-5)"
    )
    run_group.add_argument("--weight-decay", type=float, default=0.01)
    run_group.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    run_group.add_argument("--seed", type=int, default=0)
    run_group.add_argument(
        "--loss-weights",
        type=float,
        nargs=3,
        default=[1.0, 0.5, 2.0],
        metavar=("PINBALL", "CE", "MSE"),
        help="joint-loss weights",
    )
    run_group.add_argument(
        "--max-minutes", type=float, default=None, help="stop and checkpoint after this long"
    )
    run_group.add_argument(
        "--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (smoke runs)"
    )
    run_group.add_argument("--device", default="auto", help="auto | cpu | cuda")
    run_group.add_argument(
        "--threads", type=int, default=None, help="CPU threads per process (shared CPU: 1 is steadiest)"
    )
    run_group.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bars")
    run_group.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard")

    start = parser.add_argument_group("starting point")
    start.add_argument("--init-from", default=None, help="checkpoint folder to start from (fine-tuning)")
    start.add_argument("--freeze-stem", action="store_true", help="keep the CNN stem's weights fixed")
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
    arch.add_argument("--stem-channels", type=int, nargs="+")


_ARCH_FIELDS = (
    "d_model",
    "n_layers",
    "n_heads",
    "n_fusion_heads",
    "d_ff",
    "head_hidden",
    "dropout",
    "stem_channels",
)


def run(args: argparse.Namespace) -> int:
    from strategist.errors import StrategistError
    from strategist.model import ModelConfig
    from strategist.model.checkpoint import read_model_config
    from strategist.train.loop import TrainConfig, train

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )
    overrides = {name: getattr(args, name) for name in _ARCH_FIELDS if getattr(args, name) is not None}
    if (args.init_from or args.resume) and overrides:
        raise StrategistError(
            f"architecture options {sorted(overrides)} cannot change a model loaded with "
            f"{'--resume' if args.resume else '--init-from'}: its architecture comes from the checkpoint"
        )
    if args.init_from:
        impl = args.impl or read_model_config(args.init_from).impl
    else:
        impl = args.impl or "torch"
    model_cfg = ModelConfig(impl=impl, **overrides)
    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        loss_weights=tuple(args.loss_weights),
        max_minutes=args.max_minutes,
        max_steps_per_epoch=args.max_steps_per_epoch,
        freeze_stem=args.freeze_stem,
        init_from=args.init_from,
        resume=args.resume,
        device=args.device,
        threads=args.threads,
        amp=not args.no_amp,
        progress=not args.no_progress,
        tensorboard=args.tensorboard,
    )
    summary = train(args.train, args.val, args.out, model_cfg, tcfg)
    if rank == 0:
        print(json.dumps(summary, indent=2))
    return 0
