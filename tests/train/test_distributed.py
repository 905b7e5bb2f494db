"""DDP: the training entry point under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.tiny import TINY_OVERRIDES as TINY
from helpers.training_data import write_synthetic_dataset

from strategist.model.checkpoint import load_checkpoint
from strategist.paths import PROJECT_ROOT


def test_torchrun_two_cpu_processes(tmp_path):
    train_dir = write_synthetic_dataset(tmp_path / "train", 256, seed=0)
    val_dir = write_synthetic_dataset(tmp_path / "val", 64, seed=1)
    run = tmp_path / "run"
    arch = [
        "--d-model",
        str(TINY["d_model"]),
        "--n-layers",
        str(TINY["n_layers"]),
        "--n-heads",
        str(TINY["n_heads"]),
        "--n-fusion-heads",
        str(TINY["n_fusion_heads"]),
        "--d-ff",
        str(TINY["d_ff"]),
        "--head-hidden",
        str(TINY["head_hidden"]),
        "--stem-channels",
        *map(str, TINY["stem_channels"]),
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "strategist.cli",
        "train",
        "--train",
        str(train_dir),
        "--val",
        str(val_dir),
        "--out",
        str(run),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--no-progress",
        *arch,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]

    config = json.loads((run / "train_config.json").read_text())
    assert config["world_size"] == 2
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # written once, by rank 0
    # 256 samples / 2 ranks / 32 per batch = 4 steps per epoch on each rank.
    assert metrics[-1]["step"] == 8
    model, _, meta = load_checkpoint(run / "last")
    assert meta["extra"]["epoch"] == 2 and not any(k.startswith("module.") for k in model.state_dict())


def test_a_finished_torchrun_worker_exits_0_without_interpreter_shutdown_and_with_its_output():
    script = (
        "import atexit, logging, sys\n"
        "from strategist.train import distributed\n"
        "atexit.register(lambda: print('interpreter shutdown ran', flush=True))\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n"
        "print('summary', end='')\n"  # unflushed on purpose
        "logging.getLogger('t').info('last log line')\n"
        "distributed.exit_finished_worker()\n"
        "sys.exit(3)\n"
    )

    def worker(**env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_")}
        return subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env={**environ, **env},
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    under_torchrun = worker(TORCHELASTIC_RESTART_COUNT="0")
    assert under_torchrun.returncode == 0, under_torchrun.stderr
    assert under_torchrun.stdout == "summary" and "last log line" in under_torchrun.stderr
    plain = worker()  # not under torchrun: the call returns and the process goes on as usual
    assert plain.returncode == 3 and "interpreter shutdown ran" in plain.stdout
