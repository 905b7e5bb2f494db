"""Checkpoints: one folder per checkpoint, the same layout for both implementations.

    <dir>/model.safetensors   weights + normalisation buffers (keys of the implementation that saved it)
    <dir>/config.json         the model config ("impl" says which implementation; the HF one is the
                              transformers config written by save_pretrained, a superset of ModelConfig)
    <dir>/meta.json           data statistics, metrics, code revision, free-form extra, save time
    <dir>/training_state.pt   optional: optimizer / scheduler / epoch / RNG state for --resume

load_checkpoint() refuses a checkpoint whose lap stack size differs from the one the caller serves
(the tensor contract's 5 by default) with StackSizeError, before building anything.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from strategist import contract
from strategist.errors import StackSizeError, StrategistError
from strategist.model import ModelConfig, build_model
from strategist.model.config import MODEL_TYPE
from strategist.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
META_FILE = "meta.json"
TRAINING_STATE_FILE = "training_state.pt"
FORMAT_VERSION = 1


def code_revision() -> str | None:
    """`git describe --always --dirty` of the project, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def save_checkpoint(
    model: nn.Module,
    cfg: ModelConfig,
    out_dir: str | Path,
    *,
    stats: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights (safetensors), config and meta into `out_dir` (created); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    if cfg.impl == "hf":
        # transformers writes config.json + model.safetensors itself.
        model.save_pretrained(out, safe_serialization=True)  # type: ignore[operator]
    else:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {"model_type": MODEL_TYPE, **cfg.to_dict()}
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    meta = {
        "format_version": FORMAT_VERSION,
        "impl": cfg.impl,
        "stats": stats,
        "metrics": metrics or {},
        "code_revision": code_revision(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "extra": extra or {},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_checkpoint_dir(path: str | Path) -> bool:
    """True when `path` holds a checkpoint (its config.json is there)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta.json of a checkpoint folder (statistics, metrics, revision, extra); {} without one."""
    meta_path = Path(path) / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def read_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig stored in a checkpoint folder (either implementation)."""
    folder = Path(path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise StrategistError(f"{folder}: not a checkpoint folder ({CONFIG_FILE} missing)")
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise StrategistError(f"{config_path}: invalid JSON ({exc})") from exc
    impl = data.get("impl", "torch")
    if impl == "hf":
        from strategist.model.hf_model import VirtualStrategistConfig

        return VirtualStrategistConfig.from_dict(data).to_model_config()
    data = {k: v for k, v in data.items() if k != "model_type"}
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, StrategistError) as exc:
        raise StrategistError(f"{config_path}: {exc}") from exc


def load_checkpoint(
    path: str | Path,
    *,
    n_lap_context: int | None = contract.N_LAP_CONTEXT,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Load a checkpoint folder -> (model in eval mode, its ModelConfig, meta dict).

    n_lap_context: the lap stack size the caller feeds; a checkpoint built for another size raises
    StackSizeError. None skips the check (tools that only inspect checkpoints).
    """
    folder = Path(path)
    cfg = read_model_config(folder)
    if n_lap_context is not None and cfg.n_lap_context != n_lap_context:
        raise StackSizeError(
            f"{folder}: checkpoint was built for n_lap_context={cfg.n_lap_context}, "
            f"expected {n_lap_context} (slots {', '.join(contract.LAP_SLOTS)})"
        )
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise StrategistError(f"{folder}: {WEIGHTS_FILE} missing")

    from safetensors.torch import load_file

    state = load_file(str(weights_path), device="cpu")
    pos = state.get("lap_pos_embedding")
    if pos is not None and pos.shape[0] != cfg.n_lap_context:
        raise StackSizeError(
            f"{weights_path}: lap_pos_embedding has {pos.shape[0]} lap slots but config.json says "
            f"n_lap_context={cfg.n_lap_context}"
        )
    # Checkpoints saved before the corridor calibration existed carry no scale: uncalibrated (ones).
    state.setdefault(
        "interval_calibration.scale",
        torch.ones(2) if cfg.n_calibration_groups == 1 else torch.ones(cfg.n_calibration_groups, 2),
    )
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise StrategistError(
            f"{weights_path}: weights do not fit the config in {CONFIG_FILE}: {exc}"
        ) from exc
    model.to(map_location).eval()

    if not (folder / META_FILE).is_file():
        log.warning("%s: no %s (stats, metrics and revision unknown)", folder, META_FILE)
    return model, cfg, read_meta(folder)


def save_training_state(out_dir: str | Path, state: dict[str, Any]) -> Path:
    """Optimizer / scheduler / counters / RNG state next to the weights, for --resume."""
    path = Path(out_dir) / TRAINING_STATE_FILE
    torch.save(state, path)
    return path


def load_training_state(ckpt_dir: str | Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / TRAINING_STATE_FILE
    if not path.is_file():
        raise StrategistError(f"{ckpt_dir}: cannot resume, {TRAINING_STATE_FILE} missing")
    return torch.load(path, map_location="cpu", weights_only=False)
