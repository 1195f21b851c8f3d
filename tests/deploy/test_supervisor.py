"""The local cluster's supervisor with real child processes: readiness, restart with backoff, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.supervisor import StartError, Supervisor
from services.loopback import ports as loopback

READY = [sys.executable, "-c", "import time; print('READY', flush=True); time.sleep(600)"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_child_is_restarted_after_backoff_and_stop_leaves_nothing(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", tmp_path / "run")
    first = sup.start("worker", READY)
    assert int((tmp_path / "run" / "worker.pid").read_text()) == first.pid
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    now = 1e9  # far past the child's start: its backoff starts afresh at 1 s
    assert sup.restart_dead(now) == ["worker exited (killed by SIGKILL); restarting in 1 s"]
    assert sup.restart_dead(now + 0.5) == []  # still backing off
    (line,) = sup.restart_dead(now + 1.0)
    assert line.startswith("worker restarted (restart #1, pid ")
    second = sup.children[0].proc
    assert second.pid != first.pid
    assert second.poll() is None
    assert int((tmp_path / "run" / "worker.pid").read_text()) == second.pid
    sup.stop_all(grace=5)
    assert not _alive(second.pid)
    assert not (tmp_path / "run" / "worker.pid").exists()


def test_crash_loop_backs_off_exponentially(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    sup.start("flaky", [sys.executable, "-c", "raise SystemExit(3)"], ready=None)
    sup.children[0].proc.wait()
    clock, delays = sup.children[0].started, []
    for _ in range(4):  # dies at once every time: 1, 2, 4, 8 s
        (line,) = sup.restart_dead(clock)
        delays.append(line.rsplit("in ", 1)[1])
        clock = sup.children[0].due
        assert sup.restart_dead(clock)[0].startswith("flaky restarted")
        sup.children[0].proc.wait()
        sup.children[0].started = clock  # it ran for no time at all
    assert delays == ["1 s", "2 s", "4 s", "8 s"]
    sup.stop_all(grace=1)


def test_adopted_child_is_stopped_but_not_restarted(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    proc = subprocess.Popen(["/bin/sleep", "600"], start_new_session=True)
    sup.adopt("swtpm", proc)
    proc.kill()
    proc.wait()
    assert sup.restart_dead() == ["swtpm exited (killed by SIGKILL); not restartable"]
    assert sup.restart_dead() == []
    sup.stop_all(grace=1)


def test_child_that_never_gets_ready_names_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    with pytest.raises(StartError, match=r"mute did not start \(exit 1\); see .*mute\.log"):
        sup.start("mute", [sys.executable, "-c", "import sys; sys.exit(1)"])
    sup.stop_all(grace=1)


def _listen_after(delay: float, port: int) -> list[str]:
    return [sys.executable, "-c", f"import socket, time; time.sleep({delay}); "
            f"s = socket.create_server(('127.0.0.1', {port})); time.sleep(600)"]  # fmt: skip


def test_child_without_ready_line_is_started_once_its_ports_accept(tmp_path: Path) -> None:
    """HAProxy and Prometheus print no READY: `make up` must not use them before they
    listen (a demo inference once found HAProxy's frontend not yet bound)."""
    sup = Supervisor(tmp_path / "logs")
    port = loopback.kernel_port()
    sup.start("slow", _listen_after(0.5, port), ready=None, listens=(port,))
    socket.create_connection(("127.0.0.1", port), timeout=1).close()  # refused if not waited
    sup.stop_all(grace=1)


def test_child_that_exits_before_listening_says_so(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    with pytest.raises(
        StartError,
        match=r"gone exited \(exit code 2\) before listening on port \d+; see .*gone\.log",
    ):
        sup.start("gone", [sys.executable, "-c", "raise SystemExit(2)"], ready=None,
                  listens=(loopback.kernel_port(),))  # fmt: skip
    sup.stop_all(grace=1)


def test_child_that_never_listens_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs")
    port = loopback.kernel_port()
    with pytest.raises(StartError, match=rf"deaf did not listen on port {port} within 1 s"):
        sup.start("deaf", _listen_after(60, port), ready=None, timeout=1.0, listens=(port,))
    sup.stop_all(grace=1)
