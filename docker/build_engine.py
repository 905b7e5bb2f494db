"""Docker's engine-build step: `strategist export --target trt`, skipped while the engine is current.

This is the project's one engine-build route, the command a developer runs on a GPU machine:
re-export the checkpoint to ONNX, build the TensorRT FP16 engine (input shapes from
strategist.contract, one optimisation profile whose max is Triton's max_batch_size), check FP16
parity against FP32 ONNX Runtime and write both config.pbtxt. It runs in docker/Dockerfile.engine,
NVIDIA's TensorRT container of the same release as the Triton container that loads the engine
(an engine only loads on the TensorRT version and GPU it was built with).

What this file adds around the command, and nothing more:
- the profile's max batch is the `max_batch_size` of the GPU model's config.pbtxt already in the
  repository (written by the same export code), so a repository exported with `--max-batch N`
  keeps N; without that file, ServingSettings' default;
- the build is skipped when the engine passed parity after the checkpoint's weights last changed
  (build_info.json, written only after parity passed, is newer than both model.plan and the
  weights); FORCE_REBUILD=1 or --force rebuilds anyway.

    python docker/build_engine.py --repo /models --checkpoint /checkpoint --opt-batch 32
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

from export.repository import BUILD_INFO_FILE
from export.triton_config import DEFAULT_MAX_BATCH, DEFAULT_OPT_BATCH
from strategist import cli
from strategist.contract import GPU_MODEL_NAME
from strategist.errors import StrategistError
from strategist.model.checkpoint import WEIGHTS_FILE
from strategist.paths import MODEL_REPOSITORY_DIR, SERVED_CHECKPOINT_DIR

VERSION = "1"


def configured_max_batch(config: Path) -> int:
    """max_batch_size of a generated config.pbtxt; DEFAULT_MAX_BATCH when the file is absent."""
    if not config.exists():
        return DEFAULT_MAX_BATCH
    match = re.search(r"^max_batch_size:\s*(\d+)\s*$", config.read_text(), flags=re.MULTILINE)
    if match is None:
        raise StrategistError(f"{config}: no max_batch_size line; regenerate it with `strategist export`")
    return int(match.group(1))


def engine_is_current(version_dir: Path, weights: Path) -> bool:
    """True when the last build of model.plan passed parity after the weights last changed."""
    plan, info = version_dir / "model.plan", version_dir / BUILD_INFO_FILE
    if not (plan.exists() and info.exists() and weights.exists()):
        return False
    built = info.stat().st_mtime
    return built >= plan.stat().st_mtime and built > weights.stat().st_mtime


def export_command(repo: Path, checkpoint: Path, max_batch: int, opt_batch: int) -> list[str]:
    """The `strategist export` arguments of this build."""
    return [
        "export",
        "--target",
        "trt",
        "--checkpoint",
        str(checkpoint),
        "--repo",
        str(repo),
        "--version",
        VERSION,
        "--max-batch",
        str(max_batch),
        "--opt-batch",
        str(opt_batch),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path(env.get("MODEL_REPOSITORY", MODEL_REPOSITORY_DIR)),
        help="Triton model repository",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path(env.get("CHECKPOINT", SERVED_CHECKPOINT_DIR)),
        help="checkpoint folder",
    )
    parser.add_argument(
        "--opt-batch",
        type=int,
        default=int(env.get("OPT_BATCH", DEFAULT_OPT_BATCH)),
        help="profile optimum batch",
    )
    parser.add_argument("--force", action="store_true", default=bool(env.get("FORCE_REBUILD")))
    args = parser.parse_args(argv)

    weights = args.checkpoint / WEIGHTS_FILE
    if not weights.exists():
        print(f"build_engine: {weights} missing: mount a checkpoint folder at {args.checkpoint}")
        return 1
    model_dir = args.repo / GPU_MODEL_NAME
    version_dir = model_dir / VERSION
    if engine_is_current(version_dir, weights) and not args.force:
        print(
            f"build_engine: {version_dir / 'model.plan'} passed parity after the last weight change, keeping it"
        )
        return 0
    max_batch = configured_max_batch(model_dir / "config.pbtxt")
    command = export_command(args.repo, args.checkpoint, max_batch, min(args.opt_batch, max_batch))
    print("build_engine: strategist " + " ".join(command), flush=True)
    return cli.main(command)


if __name__ == "__main__":
    raise SystemExit(main())
