"""The training loop: joint loss, AdamW + warm-up/cosine, clipping, bf16 on CUDA, DDP, checkpoints.

One entry point for every case:
    pre-training         train(train_dir, val_dir, out_dir, ModelConfig(), TrainConfig())
    fine-tuning          TrainConfig(init_from=<ckpt>, freeze_stem=True, lr=1e-5)
    resume               TrainConfig(resume=True): continues <out_dir>/last (weights, optimizer,
                         scheduler, counters) at the next epoch
    distributed          the same call under `torchrun --nproc_per_node N` (DDP; gloo on CPU)
    elastic restart      under `torchrun --max-restarts K`, a worker group restarted after a worker
                         died resumes from <out_dir>/last by itself (the epoch in progress is redone)

Run folder:
    <out>/last/            checkpoint after the latest epoch (+ training_state.pt for --resume);
                           written whole into last.partial/ and swapped in, so a worker killed
                           while saving leaves last/ (or, between the two renames, last.previous/)
                           intact
    <out>/best/            checkpoint with the lowest validation loss so far
    <out>/metrics.jsonl    one line per epoch: train_* and val_* loss terms, val metrics, lr, samples/s
    <out>/train_config.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, DistributedSampler

from strategist.errors import StrategistError
from strategist.model import ModelConfig, build_model, count_parameters
from strategist.model.checkpoint import (
    TRAINING_STATE_FILE,
    is_checkpoint_dir,
    load_checkpoint,
    load_training_state,
    read_model_config,
    save_checkpoint,
    save_training_state,
)
from strategist.model.core import StrategistModel, StrategistOutput
from strategist.train import distributed
from strategist.train.config import TrainConfig
from strategist.train.data import StrategistDataset, load_dataset
from strategist.train.loss import joint_loss

log = logging.getLogger(__name__)

LAST_DIR, BEST_DIR, METRICS_FILE = "last", "best", "metrics.jsonl"
PARTIAL_SUFFIX, PREVIOUS_SUFFIX = ".partial", ".previous"
LOSS_TERMS = ("total", "pinball", "ce", "mse")


def setup_logging() -> None:
    """INFO from the main process, warnings only from the others (torchrun ranks)."""
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
    )


def model_config(
    tcfg: TrainConfig, arch: dict[str, Any] | None = None, impl: str | None = None
) -> ModelConfig:
    """The ModelConfig for a run: `arch` (ModelConfig field -> value) for a new model; with
    init_from or resume the architecture comes from the checkpoint, so `arch` must be empty.
    impl: default torch, with init_from the checkpoint's."""
    arch = dict(arch or {})
    if (tcfg.init_from or tcfg.resume) and arch:
        raise StrategistError(
            f"architecture options {sorted(arch)} cannot change a model loaded with "
            f"{'--resume' if tcfg.resume else '--init-from'}: its architecture comes from the checkpoint"
        )
    if impl is None:
        impl = read_model_config(tcfg.init_from).impl if tcfg.init_from else "torch"
    return ModelConfig(impl=impl, **arch)


class _TrainForward(nn.Module):
    """Routes DDP's forward to forward_train (DDP must see the call to sync gradients)."""

    def __init__(self, model: StrategistModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_train(*inputs)  # telemetry, tactical (, context)
        return tuple(getattr(out, f.name) for f in dataclasses.fields(out))


def freeze_stem(model: StrategistModel) -> int:
    """Stop gradients into the CNN stem; returns the number of frozen parameters."""
    frozen = 0
    for p in model.stem.parameters():
        p.requires_grad_(False)
        frozen += p.numel()
    return frozen


# Parameters the head learning-rate scale applies to: the heads and the timing-context encoder, the
# parts that start fresh when a pre-trained trunk gains the timing context.
HEAD_PREFIXES = ("pace_head", "pace_head_special", "risk_head", "tire_head", "context_encoder")


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, head_lr_scale: float = 1.0
) -> torch.optim.AdamW:
    """AdamW with four groups: (trunk, heads) x (decayed weight matrices, the rest). The groups are
    always there (an empty one is allowed) so that a resumed run's saved state always fits."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {
        (head, decay): [] for head in (False, True) for decay in (True, False)
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.dim() >= 2 and "embedding" not in name
        groups[(name.startswith(HEAD_PREFIXES), decay)].append(p)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * (head_lr_scale if head else 1.0),
            }
            for (head, decay), params in groups.items()
        ],
        lr=lr,
    )


def lr_lambda(total_steps: int, warmup_frac: float, min_lr_frac: float):
    warmup = max(1, int(warmup_frac * total_steps)) if warmup_frac > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_frac + (1.0 - min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class _Sums:
    """Running sums of each loss term weighted by its sample count, for exact epoch means."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float, count: int) -> None:
        self.values[f"{key}_sum"] = self.values.get(f"{key}_sum", 0.0) + value * count
        self.values[f"{key}_n"] = self.values.get(f"{key}_n", 0.0) + count

    def reduce(self, info: distributed.DistInfo) -> dict[str, float]:
        keys = sorted(self.values)
        totals = distributed.all_reduce_sum(
            torch.tensor([self.values[k] for k in keys], dtype=torch.float64), info
        )
        merged = dict(zip(keys, totals.tolist(), strict=True))
        names = {k[: -len("_sum")] for k in keys if k.endswith("_sum")}
        return {n: merged[f"{n}_sum"] / merged[f"{n}_n"] if merged[f"{n}_n"] else float("nan") for n in names}


def _add_loss_terms(sums: _Sums, terms: Any, batch_size: int) -> None:
    sums.add("total", terms.total.item(), batch_size)
    sums.add("pinball", terms.pinball.item(), terms.n_pace)
    sums.add("ce", terms.ce.item(), terms.n_risk)
    sums.add("mse", terms.mse.item(), terms.n_tire)


@torch.no_grad()
def evaluate(
    model: StrategistModel,
    dataset: StrategistDataset,
    info: distributed.DistInfo,
    tcfg: TrainConfig,
) -> dict[str, float]:
    """Validation loss terms and plain metrics over the whole dataset (each rank takes every
    world_size-th sample; sums are reduced across ranks). Metrics: pace_mae_s (median vs target),
    pace_coverage_80 (share of targets inside P10..P90), risk_accuracy, tire_mae."""
    was_training = model.training
    model.eval()
    cfg: ModelConfig = model.model_config
    sums = _Sums()
    indices = torch.arange(info.rank, len(dataset), info.world_size)
    for chunk in indices.split(tcfg.val_batch_size):
        batch = _to(dataset[chunk], info.device)
        with _autocast(info.device, tcfg.amp):
            out = model.forward_train(*(batch[name] for name in model.model_config.input_names))
        terms = joint_loss(out, batch, model.normalizer, cfg.quantiles, tcfg.loss_weights)
        _add_loss_terms(sums, terms, len(chunk))
        pace = out.pace_quantiles.float()
        delta = batch["pace_delta"]
        ok = torch.isfinite(delta)
        if ok.any():
            sums.add("pace_mae_s", float((pace[ok, 1] - delta[ok]).abs().mean()), int(ok.sum()))
            inside = (delta[ok] >= pace[ok, 0]) & (delta[ok] <= pace[ok, 2])
            sums.add("pace_coverage_80", float(inside.float().mean()), int(ok.sum()))
        known = batch["risk"] >= 0
        if known.any():
            correct = out.risk_logits[known].argmax(dim=1) == batch["risk"][known]
            sums.add("risk_accuracy", float(correct.float().mean()), int(known.sum()))
        tire_ok = torch.isfinite(batch["tire_health"])
        if tire_ok.any():
            err = (out.tire_health.float().squeeze(1)[tire_ok] - batch["tire_health"][tire_ok]).abs()
            sums.add("tire_mae", float(err.mean()), int(tire_ok.sum()))
    model.train(was_training)
    return sums.reduce(info)


def _build(
    model_cfg: ModelConfig, tcfg: TrainConfig, out_dir: Path, train_set: StrategistDataset
) -> tuple[StrategistModel, ModelConfig, dict[str, Any] | None]:
    """The model to train and, on --resume, the saved training state."""
    if tcfg.resume:
        last = _snapshot_dir(out_dir) or out_dir / LAST_DIR
        if not is_checkpoint_dir(last):
            raise StrategistError(f"--resume: no checkpoint to resume in {last}")
        model, cfg, _ = load_checkpoint(last, n_lap_context=model_cfg.n_lap_context)
        log.info("resuming %s (architecture from its config.json)", last)
        return model, cfg, load_training_state(last)
    if tcfg.init_from:
        source_cfg = read_model_config(tcfg.init_from)
        model, cfg, _ = load_checkpoint(tcfg.init_from, n_lap_context=model_cfg.n_lap_context)
        if model_cfg.impl != cfg.impl:
            model, cfg = _convert_impl(model, source_cfg, model_cfg.impl)
        if model_cfg.n_context != cfg.n_context:
            model = _add_context(model, cfg, model_cfg, train_set, str(tcfg.init_from))
            return model, model.model_config, None
        log.info(
            "initialised from %s (architecture and normalisation stats from the checkpoint)", tcfg.init_from
        )
        return model, cfg, None
    fresh: StrategistModel = build_model(model_cfg)
    fresh.set_stats(train_set.stats)
    return fresh, model_cfg, None


def _add_context(
    source: StrategistModel,
    source_cfg: ModelConfig,
    model_cfg: ModelConfig,
    train_set: StrategistDataset,
    name: str,
) -> StrategistModel:
    """A model with the requested timing context, started from a checkpoint built without one (or
    the other way round): every weight whose name and shape match is copied (stem, lap transformer,
    tactical fusion), the context encoder and the heads' first layers start fresh.

    Normalisation: telemetry and tactical statistics stay the checkpoint's (its stem was trained on
    them); the context and pace-target statistics are the training set's, as nothing else has them.
    """
    cfg = source_cfg.replace(
        n_context=model_cfg.n_context,
        context_hidden=model_cfg.context_hidden,
        split_pace_head=model_cfg.split_pace_head,
        racing_head_inputs=model_cfg.racing_head_inputs,
    )
    model: StrategistModel = build_model(cfg)
    target = model.state_dict()
    copied, fresh = [], []
    for key, value in source.state_dict().items():
        if key in target and target[key].shape == value.shape and not key.startswith("normalizer."):
            target[key] = value
            copied.append(key)
    fresh = [k for k in target if k not in copied and not k.startswith("normalizer.")]
    if cfg.n_context:  # fresh pace heads start from persistence (see strategist.model.core)
        for key in target:
            if key.startswith(("pace_head.out.", "pace_head_special.out.")):
                target[key] = torch.zeros_like(target[key])
    model.load_state_dict(target)
    stats = {**source.normalizer.stats(), **{k: train_set.stats[k] for k in model.normalizer.stat_keys
             if k.startswith(("context_", "pace_delta_"))}}  # fmt: skip
    model.set_stats(stats)
    log.info(
        "initialised from %s with n_context=%d: %d tensors copied, %d fresh (%s)",
        name,
        cfg.n_context,
        len(copied),
        len(fresh),
        ", ".join(sorted({k.split(".")[0] for k in fresh})),
    )
    return model


def _resume_after_elastic_restart(tcfg: TrainConfig, out: Path) -> TrainConfig:
    """torchrun restarted the workers (one died): continue from the last snapshot, not from scratch.
    Before the first snapshot there is nothing to resume and the run starts over."""
    restarts = distributed.elastic_restart_count()
    snapshot = _snapshot_dir(out)
    if tcfg.resume or restarts == 0 or snapshot is None:
        return tcfg
    log.warning("torchrun restart %d: resuming from %s", restarts, snapshot)
    return dataclasses.replace(tcfg, resume=True)


def _snapshot_dir(out: Path) -> Path | None:
    """The complete snapshot to resume from: last/, or last.previous/ when a worker died between
    the two renames of `_swap_in` (last/ already moved aside, the new one not yet in place)."""
    for folder in (out / LAST_DIR, out / (LAST_DIR + PREVIOUS_SUFFIX)):
        if (folder / TRAINING_STATE_FILE).is_file():
            return folder
    return None


def _swap_in(partial: Path, final: Path) -> None:
    """Put a fully written folder in place of `final`. A directory cannot be renamed over a
    non-empty one, so the old folder is moved aside first; at every instant one whole copy exists."""
    previous = final.with_name(final.name + PREVIOUS_SUFFIX)
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
    partial.rename(final)
    shutil.rmtree(previous, ignore_errors=True)


def _reconcile_metrics(out: Path, state: dict[str, Any]) -> None:
    """Make metrics.jsonl end at the snapshot being resumed: drop lines of epochs after it (written
    by a run that died before its next snapshot) and restore the snapshot's own line if the run died
    between the snapshot and the append."""
    snapshot_epoch = state["epoch"] + 1
    path = out / METRICS_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= snapshot_epoch]
    if (not kept or json.loads(kept[-1])["epoch"] < snapshot_epoch) and "metrics_record" in state:
        kept.append(json.dumps(state["metrics_record"]))
    if kept != [line for line in lines if line.strip()]:
        log.warning("%s: rewritten to end at the resumed epoch %d", path, snapshot_epoch)
        path.write_text("".join(line + "\n" for line in kept))


def _convert_impl(model: StrategistModel, cfg: ModelConfig, impl: str) -> tuple[StrategistModel, ModelConfig]:
    from strategist.model.weight_mapping import hf_to_torch_state_dict, torch_to_hf_state_dict

    new_cfg = cfg.replace(impl=impl)
    convert = torch_to_hf_state_dict if impl == "hf" else hf_to_torch_state_dict
    new_model = build_model(new_cfg)
    new_model.load_state_dict(convert(model.state_dict()), strict=True)
    return new_model, new_cfg


def train(
    train_dir: str | Path,
    val_dir: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    tcfg: TrainConfig,
) -> dict[str, Any]:
    """Train; returns a summary (epochs run, best validation loss, checkpoint folders, samples/s)."""
    out = Path(out_dir)
    tcfg = _resume_after_elastic_restart(tcfg, out)
    info = distributed.setup(tcfg.device)
    try:
        return _train(Path(train_dir), Path(val_dir), out, model_cfg, tcfg, info)
    finally:
        distributed.teardown()


def _train(
    train_dir: Path,
    val_dir: Path,
    out: Path,
    model_cfg: ModelConfig,
    tcfg: TrainConfig,
    info: distributed.DistInfo,
) -> dict[str, Any]:
    if not tcfg.resume and ((out / LAST_DIR).exists() or (out / METRICS_FILE).exists()):
        # Never mix two runs' checkpoints and metrics in one folder.
        raise StrategistError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if tcfg.threads is not None:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    train_set = load_dataset(train_dir)
    val_set = load_dataset(val_dir)
    model, model_cfg, state = _build(model_cfg, tcfg, out, train_set)
    stats = model.normalizer.stats()
    if tcfg.freeze_stem:
        n_frozen = freeze_stem(model)
        log.info("stem frozen: %d parameters", n_frozen)
    model.to(info.device).train()

    forward: nn.Module = _TrainForward(model)
    if info.enabled:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[info.local_rank] if info.device.type == "cuda" else None
        )

    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=tcfg.seed
    )
    batches = BatchSampler(sampler, tcfg.batch_size, drop_last=False)
    steps_per_epoch = (
        len(batches) if tcfg.max_steps_per_epoch is None else min(len(batches), tcfg.max_steps_per_epoch)
    )
    optimizer = make_optimizer(model, tcfg.lr, tcfg.weight_decay, tcfg.head_lr_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(tcfg.epochs * steps_per_epoch, tcfg.warmup_frac, tcfg.min_lr_frac)
    )
    start_epoch, step, best_val = 0, 0, float("inf")
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best_val = state["epoch"] + 1, state["step"], state["best_val"]
        if info.is_main:
            _reconcile_metrics(out, state)

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(
            json.dumps(
                {
                    "model": model_cfg.to_dict(),
                    "train": dataclasses.asdict(tcfg),
                    "world_size": info.world_size,
                    "train_dir": str(train_dir),
                    "val_dir": str(val_dir),
                    "n_train": len(train_set),
                    "n_val": len(val_set),
                    "missing_targets": {
                        "train": train_set.missing.as_dict(),
                        "val": val_set.missing.as_dict(),
                    },
                },
                indent=2,
            )
            + "\n"
        )
        log.info(
            "training %s model (%d parameters, %d trainable) on %d samples, validating on %d; device %s, world %d",
            model_cfg.impl,
            count_parameters(model),
            count_parameters(model, trainable_only=True),
            len(train_set),
            len(val_set),
            info.device,
            info.world_size,
        )
    writer = _tensorboard(out, tcfg) if info.is_main else None

    started = time.monotonic()
    epoch = start_epoch - 1
    samples_per_s = float("nan")
    stopped_early = False
    for epoch in range(start_epoch, tcfg.epochs):
        sampler.set_epoch(epoch)
        sums = _Sums()
        epoch_start, n_seen = time.monotonic(), 0
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{tcfg.epochs}", tcfg.progress and info.is_main)
        for i, indices in enumerate(batches):
            if i >= steps_per_epoch:
                break
            batch = _to(train_set[torch.as_tensor(indices)], info.device)
            with _autocast(info.device, tcfg.amp):
                out_tuple = forward(*(batch[name] for name in model_cfg.input_names))
            terms = joint_loss(
                StrategistOutput(*out_tuple), batch, model.normalizer, model_cfg.quantiles, tcfg.loss_weights
            )
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            n_seen += len(indices)
            _add_loss_terms(sums, terms, len(indices))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{terms.total.item():.4f}")
            over_time = (
                tcfg.max_minutes is not None and (time.monotonic() - started) / 60.0 > tcfg.max_minutes
            )
            if distributed.any_process(over_time, info):
                stopped_early = True
                break
        if bar is not None:
            bar.close()
        train_seconds = time.monotonic() - epoch_start
        samples_per_s = float(distributed.all_reduce_sum(torch.tensor([float(n_seen)]), info)[0]) / max(
            train_seconds, 1e-9
        )

        train_terms = sums.reduce(info)
        val = evaluate(model, val_set, info, tcfg)
        record = {
            "epoch": epoch + 1,
            "step": step,
            "lr": scheduler.get_last_lr()[0],
            **{f"train_{k}": train_terms.get(k, float("nan")) for k in LOSS_TERMS},
            **{f"val_{k}": v for k, v in sorted(val.items())},
            "train_samples_per_s": samples_per_s,
            "elapsed_s": time.monotonic() - started,
            "stopped_early": stopped_early,
        }
        improved = val["total"] < best_val
        best_val = min(best_val, val["total"])
        if info.is_main:
            log.info(
                "epoch %d: train %.4f val %.4f (pinball %.4f ce %.4f mse %.4f) %.0f samples/s",
                epoch + 1,
                record["train_total"],
                val["total"],
                val["pinball"],
                val["ce"],
                val["mse"],
                samples_per_s,
            )
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, float):
                        writer.add_scalar(key, value, epoch + 1)
            metrics = {k: v for k, v in record.items() if k != "stopped_early"}
            extra = {
                "epoch": epoch + 1,
                "step": step,
                "train_dir": str(train_dir),
                "val_dir": str(val_dir),
                "init_from": tcfg.init_from,
                "freeze_stem": tcfg.freeze_stem,
            }
            # Snapshot first, metrics line second: a line in metrics.jsonl means its epoch can be
            # resumed; a death in between is repaired by _reconcile_metrics from the snapshot.
            partial = out / (LAST_DIR + PARTIAL_SUFFIX)
            shutil.rmtree(partial, ignore_errors=True)
            save_checkpoint(model, model_cfg, partial, stats=stats, metrics=metrics, extra=extra)
            save_training_state(
                partial,
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "best_val": best_val,
                    "train_config": dataclasses.asdict(tcfg),
                    "metrics_record": record,
                },
            )
            _swap_in(partial, out / LAST_DIR)
            if improved:
                partial = out / (BEST_DIR + PARTIAL_SUFFIX)
                shutil.rmtree(partial, ignore_errors=True)
                save_checkpoint(model, model_cfg, partial, stats=stats, metrics=metrics, extra=extra)
                _swap_in(partial, out / BEST_DIR)
            with (out / METRICS_FILE).open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        distributed.barrier(info)
        if stopped_early:
            log.info(
                "stopped after %.1f minutes (--max-minutes %s)",
                (time.monotonic() - started) / 60,
                tcfg.max_minutes,
            )
            break
    if writer is not None:
        writer.close()
    return {
        "epochs_completed": epoch + 1,
        "steps": step,
        "best_val_total": best_val,
        "last_dir": str(out / LAST_DIR),
        "best_dir": str(out / BEST_DIR),
        "train_samples_per_s": samples_per_s,
        "stopped_early": stopped_early,
        "world_size": info.world_size,
    }


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _tensorboard(out: Path, tcfg: TrainConfig):
    if not tcfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise StrategistError(
            "--tensorboard needs the tensorboard package (pip install tensorboard)"
        ) from exc
    return SummaryWriter(log_dir=str(out / "tensorboard"))
