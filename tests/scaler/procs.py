"""Real processes for the EPC tests: sim enclaves and binaries started as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_ENCLAVE = """
import sys, time
from pathlib import Path
from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import EpcPool
pool = EpcPool(Path(sys.argv[1]), sys.argv[2], cost=PagingCost(0.0))
handle = pool.register(sys.argv[3], sys.argv[4], int(sys.argv[5]))
result = pool.touch(handle)
print(f"READY {result.paged_in} {result.paged_out}", flush=True)
sys.stdin.readline()
"""


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def enclave_process(
    pool: Path, node: str, name: str, kind: str, size: int
) -> subprocess.Popen[str]:
    """A separate process that registers an enclave, touches it once, then waits for stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENCLAVE, str(pool), node, name, kind, str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), line
    return proc


def module(name: str, *args: str) -> subprocess.Popen[str]:
    """Runs `python -m name args` (a service main) with the test's import path."""
    return subprocess.Popen(
        [sys.executable, "-m", name, *args], stdout=subprocess.PIPE, text=True, env=env()
    )


def ready_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), f"no READY line, exit code {proc.poll()}"
    return line.strip()
