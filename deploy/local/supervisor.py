"""Child processes of the local cluster: started in order, restarted when they die, stopped in reverse.

What kubelet does for pods, for processes: a child that exits while the
cluster runs is restarted with exponential backoff (1 s doubling to 30 s),
its pid is kept in `run/<name>.pid` for operators, and shutdown leaves none
behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from services.loopback import ports as loopback

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # a child that ran this long before dying starts its backoff afresh


class StartError(Exception):
    """A component did not become ready; the message names it and its log."""


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: str | None
    timeout: float
    proc: subprocess.Popen[str]
    listens: tuple[int, ...] = ()
    restarts: int = 0
    backoff: float = BACKOFF_START
    due: float = 0.0  # monotonic time of the next restart attempt, once dead
    started: float = field(default_factory=time.monotonic)


def _drain(stream: IO[str], log: IO[str]) -> None:
    """Copies what a child prints after READY to its log, so a full pipe never blocks it."""
    for line in stream:
        log.write(line)
        log.flush()


@dataclass
class Supervisor:
    logs: Path
    run: Path | None = None
    children: list[Child] = field(default_factory=list)
    # The scaler starts and stops replicas from its own thread.
    lock: threading.RLock = field(default_factory=threading.RLock)

    def start(
        self,
        name: str,
        argv: list[str],
        ready: str | None = "READY",
        timeout: float = 120.0,
        listens: tuple[int, ...] = (),
    ) -> subprocess.Popen[str]:
        """Starts `argv`; with `ready`, waits for a stdout line starting with it, and with
        `listens` (for programs that print no such line: HAProxy, Prometheus) until each
        loopback port accepts connections."""
        proc = self._spawn(name, argv, ready, timeout, listens)
        child = Child(name, argv, ready, timeout, proc, listens)
        with self.lock:
            self.children.append(child)
        return child.proc

    def stop_one(self, name: str, grace: float = 10.0) -> None:
        """Stops one child for good (scale-in): it is not restarted."""
        with self.lock:
            child = next((c for c in self.children if c.name == name), None)
            if child is None:
                return
            self.children.remove(child)
        _stop(child, grace)
        if self.run is not None:
            (self.run / f"{name}.pid").unlink(missing_ok=True)

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Stops `proc` with the others; it was started elsewhere, so it is not restarted."""
        self.children.append(Child(name, [], None, 0.0, proc))  # type: ignore[arg-type]

    def _spawn(
        self,
        name: str,
        argv: list[str],
        ready: str | None,
        timeout: float,
        listens: tuple[int, ...],
    ) -> subprocess.Popen[str]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("a")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if ready else log,
            stderr=log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
        )
        if self.run is not None:
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / f"{name}.pid").write_text(f"{proc.pid}\n")
        if ready is None:
            self._await_ports(name, proc, listens, timeout)
            return proc
        assert proc.stdout is not None
        timer = threading.Timer(timeout, _kill_if_running, args=(proc,))
        timer.start()
        try:
            for line in proc.stdout:
                if line.startswith(ready):
                    threading.Thread(target=_drain, args=(proc.stdout, log), daemon=True).start()
                    return proc
        finally:
            timer.cancel()
        raise StartError(
            f"{name} did not start (exit {proc.wait()}); see {self.logs / f'{name}.log'}"
        )

    def _await_ports(
        self, name: str, proc: subprocess.Popen[str], ports: tuple[int, ...], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        for port in ports:
            if loopback.listening(proc, port, deadline):
                continue
            if proc.poll() is not None:
                raise StartError(
                    f"{name} exited ({_describe(proc.returncode)}) before listening on "
                    f"port {port}; see {self.logs / f'{name}.log'}"
                )
            _kill_if_running(proc)
            proc.wait()
            raise StartError(
                f"{name} did not listen on port {port} within {timeout:.0f} s; "
                f"see {self.logs / f'{name}.log'}"
            )

    def restart_dead(self, now: float | None = None) -> list[str]:
        """Restarts children that exited, each on its own backoff; returns what it did."""
        now = time.monotonic() if now is None else now
        report = []
        with self.lock:
            children = list(self.children)
        for child in children:
            code = child.proc.poll()
            if code is None or now < child.due:
                continue
            if not child.argv:
                child.due = float("inf")
                report.append(f"{child.name} exited ({_describe(code)}); not restartable")
            elif child.due == 0.0:
                if now - child.started > STABLE_AFTER:
                    child.backoff = BACKOFF_START
                child.due = now + child.backoff
                report.append(
                    f"{child.name} exited ({_describe(code)}); restarting in {child.backoff:.0f} s"
                )
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            else:
                report.append(self._restart(child, now))
        return report

    def _restart(self, child: Child, now: float) -> str:
        child.restarts += 1
        try:
            child.proc = self._spawn(
                child.name, child.argv, child.ready, child.timeout, child.listens
            )
        except StartError as err:
            child.due = now + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            return f"{err}; next attempt in {child.due - now:.0f} s"
        child.due, child.started = 0.0, time.monotonic()
        return f"{child.name} restarted (restart #{child.restarts}, pid {child.proc.pid})"

    def stop_all(self, grace: float = 10.0) -> None:
        with self.lock:
            children = list(reversed(self.children))
        for child in children:
            if child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            _stop(child, max(0.1, deadline - time.monotonic()))
            if self.run is not None:
                (self.run / f"{child.name}.pid").unlink(missing_ok=True)
        self.children.clear()


def _stop(child: Child, grace: float) -> None:
    if child.proc.poll() is None:
        os.killpg(child.proc.pid, signal.SIGTERM)
    try:
        child.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
    _kill_group(child.proc.pid)  # grandchildren of a child that died first


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_if_running(proc: subprocess.Popen[str]) -> None:
    """A child that never says READY must not block `make up` forever."""
    if proc.poll() is None:
        proc.kill()
