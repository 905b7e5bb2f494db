"""The Triton supervisor (strategist.serving.supervisor) on a real local Triton: kill -9 and SIGSTOP
are followed by a restart on the same port without anyone stepping in, the old server's stubs and
shared memory are reaped, the model cannot be unloaded through Triton's ports, and close() leaves no
work folder behind."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from helpers.skips import skip_without_triton
from helpers.tiny import tiny_config

from export.repository import build_cpu_repository
from export.sample_inputs import realistic_stats
from strategist.contract import CPU_MODEL_NAME
from strategist.model import build_model
from strategist.model.checkpoint import save_checkpoint
from strategist.serving.supervisor import TritonSupervisor
from strategist.serving.triton_launcher import LocalTriton


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    skip_without_triton()
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    checkpoint = save_checkpoint(model, cfg, tmp_path_factory.mktemp("ckpt"), stats=realistic_stats(64))
    repo = tmp_path_factory.mktemp("repo")
    build_cpu_repository(checkpoint, repo)
    return repo


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields[0]: state, fields[2]: pgrp
                members.append(int(entry.name))
    return members


def test_killed_and_hung_triton_come_back_by_themselves_with_nothing_left_over(repository, tmp_path):
    triton = LocalTriton(repository, (CPU_MODEL_NAME,), log_path=tmp_path / "triton.log").start(timeout_s=120)
    supervisor = TritonSupervisor(
        triton, check_interval_s=0.2, check_timeout_s=0.5, hang_checks=3, start_timeout_s=20
    ).start()
    try:
        port = triton.grpc_port
        first = triton.pid
        assert first is not None
        assert len(_group_members(first)) >= 2  # the server and its Python-backend stub
        shm = list(Path("/dev/shm").glob(f"{triton._shm_prefix}*"))
        assert shm, "the Python backend's shared memory was expected under /dev/shm"

        os.kill(first, signal.SIGKILL)  # the server alone, as `kill -9 <pid>` does
        # The supervisor's own word that the new server is up: a new pid answering a health check
        # is not enough (the supervisor may not have seen it ready yet, and the SIGSTOP below
        # would then land in the middle of its start).
        assert supervisor.wait_restarted(1, 90), supervisor.events
        assert triton.pid not in (None, first) and triton.is_ready()
        assert triton.grpc_port == port
        assert _group_members(first) == [], "the killed server's stub outlived it"
        assert not any(region.exists() for region in shm), "the killed server's shared memory is left"

        second = triton.pid
        assert second is not None
        os.kill(second, signal.SIGSTOP)  # hung: the port accepts, nothing answers
        assert supervisor.wait_restarted(2, 90), supervisor.events
        assert triton.pid not in (None, second) and triton.is_ready()
        assert _group_members(second) == []
        # A restart that does not become ready in start_timeout_s is retried (back-off): the order of
        # what happened is fixed, not the number of tries.
        kinds = [e.kind for e in supervisor.events if e.kind != "restart_failed"]
        assert kinds == ["died", "restarted", "hung", "restarted"], supervisor.events

        # Model control mode "none": Triton's own ports cannot take the model away.
        unload = urllib.request.Request(
            f"http://{triton.http_url}/v2/repository/models/{CPU_MODEL_NAME}/unload",
            data=b"{}",
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(unload, timeout=5)
        assert triton.is_ready()
    finally:
        workdir = triton._workdir
        supervisor.close()
    assert triton.pid is None
    assert workdir is not None and not workdir.exists()


class _FakeTriton:
    """Enough of LocalTriton for the supervisor's loop: dies once, then restarts fine."""

    def __init__(self) -> None:
        self.running = True
        self.starts = 0

    def is_running(self) -> bool:
        return self.running

    def exit_code(self) -> int | None:
        return None if self.running else -9

    def is_ready(self, timeout_s: float = 1.0) -> bool:
        return self.running

    def stop(self, timeout_s: float = 10.0, *, kill: bool = False) -> None:
        self.running = False

    def start(self, timeout_s: float = 60.0) -> _FakeTriton:
        self.starts += 1
        self.running = True
        return self

    def close(self) -> None:
        self.running = False

    pid = 1


def test_wait_restarted_is_the_supervisors_word_and_times_out_without_a_restart():
    fake = _FakeTriton()
    supervisor = TritonSupervisor(fake, check_interval_s=0.01).start()  # type: ignore[arg-type]
    try:
        assert not supervisor.wait_restarted(1, 0.2)  # nothing died: no restart
        fake.running = False
        assert supervisor.wait_restarted(1, 10)
        assert fake.starts == 1 and [e.kind for e in supervisor.events] == ["died", "restarted"]
    finally:
        supervisor.close()
