"""Elastic training: torchrun (c10d rendezvous, --max-restarts 1) restarts the workers after one is
killed mid-epoch, and the trainer resumes from its last snapshot instead of starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.tiny import TINY_OVERRIDES as TINY
from helpers.training_data import write_synthetic_dataset

from strategist.model.checkpoint import load_checkpoint
from strategist.paths import PROJECT_ROOT
from strategist.serving.triton_launcher import free_port

TRAIN_SAMPLES, BATCH, WORLD = 1024, 8, 2
STEPS_PER_EPOCH = TRAIN_SAMPLES // WORLD // BATCH  # 64 on each rank


def _arch() -> list[str]:
    args = []
    for key in ("d_model", "n_layers", "n_heads", "n_fusion_heads", "d_ff", "head_hidden"):
        args += [f"--{key.replace('_', '-')}", str(TINY[key])]
    return [*args, "--stem-channels", *map(str, TINY["stem_channels"])]


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def _worker_of_rank(agent_pid: int, rank: int) -> int | None:
    for pid in _descendants(agent_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RESTART_COUNT=0" in environ:
            return pid
    return None


def _epochs(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        return []
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_killed_worker_is_restarted_and_the_run_resumes_from_the_snapshot(tmp_path):
    train_dir = write_synthetic_dataset(tmp_path / "train", TRAIN_SAMPLES, seed=0)
    val_dir = write_synthetic_dataset(tmp_path / "val", 32, seed=1)
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc-per-node", str(WORLD), "--max-restarts", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "elastic-test",
        "-m", "strategist.cli", "train",
        "--train", str(train_dir), "--val", str(val_dir), "--out", str(run),
        "--epochs", "3", "--batch-size", str(BATCH), "--device", "cpu", "--no-progress", *_arch(),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    log = (tmp_path / "torchrun.log").open("w")
    agent = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Kill rank 1 once epoch 1's snapshot is written, i.e. while epoch 2 runs.
        deadline = time.monotonic() + 150
        while len(_epochs(run / "metrics.jsonl")) < 1:
            assert agent.poll() is None, (tmp_path / "torchrun.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "epoch 1 did not finish in time"
            time.sleep(0.02)
        victim = _worker_of_rank(agent.pid, 1)
        assert victim is not None, "rank 1 worker not found"
        os.kill(victim, signal.SIGKILL)
        epochs_at_kill = len(_epochs(run / "metrics.jsonl"))
        code = agent.wait(timeout=200)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
    output = (tmp_path / "torchrun.log").read_text()
    assert code == 0, output[-3000:]
    assert epochs_at_kill == 1, "the kill landed after epoch 2 had finished: not mid-epoch"
    assert "torchrun restart 1: resuming from" in output, output[-3000:]
    metrics = _epochs(run / "metrics.jsonl")
    # Epoch 2 (interrupted) is redone once from the epoch-1 snapshot: no epoch twice, none missing,
    # and the step counter continues from the snapshot's.
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [m["step"] for m in metrics] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    _, _, meta = load_checkpoint(run / "last")
    assert meta["extra"]["epoch"] == 3
