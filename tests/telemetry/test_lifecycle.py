"""stop_requested: SIGTERM and SIGINT each end the wait of a real child process, which exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

_CHILD = (
    "from services.telemetry import lifecycle\n"
    "stop = lifecycle.stop_requested()\n"
    "print('waiting', flush=True)\n"
    "raise SystemExit(0 if stop.wait(60) else 3)\n"
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_event(signum: signal.Signals) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting"
        child.send_signal(signum)
        assert child.wait(timeout=10) == 0  # left its wait, not killed by the signal
    finally:
        child.kill()
        child.wait()
