"""Keep a local Triton serving: restart it by itself when it dies or hangs.

A background thread checks the server every `check_interval_s`:

- the process has exited (killed, crashed)         -> restart at once;
- it runs but its health endpoints stop answering  -> after `hang_checks` failed checks in a row
  (each waits at most `check_timeout_s`; a SIGSTOPped server accepts the connection and never
  answers), it is killed (SIGKILL to its process group) and restarted.

Every restart reaps the old server, its Python-backend stubs and their shared memory first
(LocalTriton.stop), then starts a new server on the same ports, so the gateway's channel reconnects
to the same address. Restarts that keep failing back off: 1, 2, 4 ... up to `max_backoff_s` between
tries; a server that stayed healthy for `stable_s` resets the back-off. While Triton is down the
gateway answers 503 + Retry-After and /readyz says not ready (server/triton_pool.py probes it).

The thread is also the restarted server's parent: the launcher asks the kernel to end a server when
the thread that started it ends (PR_SET_PDEATHSIG), so the thread lives until close().

A restarted server has a pid (LocalTriton.pid) before the supervisor has seen it ready: anything
that acts on "the restarted server" (a test, the chaos benchmark) waits for wait_restarted(n), the
supervisor's own word, not for the new pid answering a health check. Otherwise a signal sent to the
new server lands while the supervisor is still waiting for it to start, and that start fails.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from strategist.serving.triton_launcher import LocalTriton, TritonLaunchError

log = logging.getLogger("strategist.serve")


@dataclass
class SupervisorEvent:
    at: float  # time.monotonic()
    kind: str  # "died", "hung", "restarted", "restart_failed"
    detail: str = ""


@dataclass
class TritonSupervisor:
    triton: LocalTriton
    check_interval_s: float = 0.5
    check_timeout_s: float = 1.0
    hang_checks: int = 3
    start_timeout_s: float = 120.0
    min_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_s: float = 30.0
    events: list[SupervisorEvent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def restarts(self) -> int:
        return sum(1 for event in self.events if event.kind == "restarted")

    def start(self) -> TritonSupervisor:
        """Watch the (already started) server from a background thread."""
        if self._thread is not None:
            raise RuntimeError("the supervisor is already running")
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching, then stop the server and remove its work folder."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.start_timeout_s + 15.0)
            self._thread = None
        self.triton.close()

    def wait_restarted(self, count: int, timeout_s: float) -> bool:
        """Block until the supervisor has restarted the server `count` times in all (and seen the
        last one ready); False after `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self.restarts >= count, timeout=timeout_s)

    def _record(self, kind: str, detail: str = "") -> None:
        with self._changed:
            self.events.append(SupervisorEvent(time.monotonic(), kind, detail))
            self._changed.notify_all()

    def _watch(self) -> None:
        failed_checks = 0
        backoff_s = self.min_backoff_s
        healthy_since = time.monotonic()
        while not self._stop.wait(self.check_interval_s):
            if not self.triton.is_running():
                code = self.triton.exit_code()
                log.warning("Triton exited (code %s): restarting it", code)
                self._record("died", f"exit code {code}")
            elif self.triton.is_ready(timeout_s=self.check_timeout_s):
                failed_checks = 0
                if time.monotonic() - healthy_since >= self.stable_s:
                    backoff_s = self.min_backoff_s
                continue
            else:
                failed_checks += 1
                if failed_checks < self.hang_checks:
                    continue
                log.warning(
                    "Triton failed %d health checks in a row: killing and restarting it", failed_checks
                )
                self._record("hung", f"{failed_checks} failed checks")
            failed_checks = 0
            while not self._stop.is_set() and not self._restart():
                log.warning(
                    "Triton restart failed (%s): next try in %.0f s", self.events[-1].detail, backoff_s
                )
                if self._stop.wait(backoff_s):
                    return
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
            healthy_since = time.monotonic()

    def _restart(self) -> bool:
        self.triton.stop(kill=True)  # reaps the stubs and the shared memory of the old server
        started = time.monotonic()
        try:
            self.triton.start(timeout_s=self.start_timeout_s)
        except TritonLaunchError as exc:
            self._record("restart_failed", str(exc).splitlines()[0])
            return False
        seconds = time.monotonic() - started
        log.info("Triton restarted in %.1f s (pid %s)", seconds, self.triton.pid)
        self._record("restarted", f"{seconds:.1f} s")
        return True
