"""Child processes of the local cluster: started in order, stopped in reverse, none left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class StartError(Exception):
    """A component did not become ready; the message names it and its log."""


@dataclass
class Supervisor:
    logs: Path
    children: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], ready: str | None = "READY", timeout: float = 120.0
    ) -> subprocess.Popen[str]:
        """Starts `argv`; with `ready`, waits for a stdout line starting with it."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("a")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if ready else log,
            stderr=log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
        )
        self.children.append((name, proc))
        if ready is None:
            return proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            if line.startswith(ready):
                return proc
            if time.monotonic() > deadline:
                break
        raise StartError(
            f"{name} did not start (exit {proc.poll()}); see {self.logs / f'{name}.log'}"
        )

    def stop_all(self, grace: float = 10.0) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.children.clear()

    def dead(self) -> list[str]:
        return [name for name, proc in self.children if proc.poll() is not None]
