"""Supervisor shared by run_mlserver.py and run_kserve.py.

Starts the server as a child in its own process group, polls the KServe v2
gRPC `ServerReady` RPC on 127.0.0.1:<grpc-port> (and `ModelReady` for every
model), prints `READY` on stdout, then waits. SIGTERM/SIGINT are forwarded to
the child (as SIGTERM); the server's stdout is sent to stderr; if it (or anything it spawned) is still alive after a grace period
the whole process group is killed. Exit status is the child's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import grpc


def discover(models_dir: str) -> list[tuple[str, str, str]]:
    """(name, tflite_path, json_path) for every <stem>.tflite with a <stem>.json next to it."""
    found = []
    for entry in sorted(os.listdir(models_dir)):
        if entry.endswith(".tflite"):
            stem = entry[: -len(".tflite")]
            meta = os.path.join(models_dir, stem + ".json")
            if os.path.exists(meta):
                found.append(
                    (stem, os.path.abspath(os.path.join(models_dir, entry)), os.path.abspath(meta))
                )
    if not found:
        raise SystemExit(f"no <name>.tflite + <name>.json pairs in {models_dir}")
    return found


def _group_members(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


_SERVICE = "/inference.GRPCInferenceService/"


def _pb_string(field: int, value: str) -> bytes:
    data = value.encode()
    assert len(data) < 128
    return bytes([field << 3 | 2, len(data)]) + data


def _is_true(resp: bytes) -> bool:
    # ServerReadyResponse / ModelReadyResponse: `bool ready = 1;`
    return resp == b"\x08\x01"


def probe(grpc_port: int, models: list[str], timeout: float = 1.0) -> bool:
    """True once ServerReady and ModelReady(name) answer ready=true."""
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        ident = lambda b: b  # noqa: E731
        try:
            if not _is_true(
                ch.unary_unary(_SERVICE + "ServerReady", ident, ident)(b"", timeout=timeout)
            ):
                return False
            rpc = ch.unary_unary(_SERVICE + "ModelReady", ident, ident)
            return all(_is_true(rpc(_pb_string(1, m), timeout=timeout)) for m in models)
        except grpc.RpcError:
            return False


def supervise(
    cmd: list[str],
    grpc_port: int,
    models: list[str],
    env: dict[str, str] | None = None,
    startup_timeout: float = 180.0,
    grace: float = 20.0,
    cleanup=None,
) -> int:
    # The server's own stdout goes to our stderr so that our stdout carries only READY.
    child = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=sys.stderr)
    stopping = {"sig": None}

    def forward(sig, _frame):
        stopping["sig"] = sig
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)  # both servers shut down gracefully on SIGTERM

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        deadline = time.monotonic() + startup_timeout
        while stopping["sig"] is None and child.poll() is None:
            if probe(grpc_port, models):
                print("READY", flush=True)
                break
            if time.monotonic() > deadline:
                print(f"server not ready after {startup_timeout}s", file=sys.stderr, flush=True)
                forward(signal.SIGTERM, None)
                break
            time.sleep(0.2)
        kill_at = None
        while True:
            try:
                rc = child.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if stopping["sig"] is None:
                    continue
                if kill_at is None:
                    kill_at = time.monotonic() + grace
                elif time.monotonic() > kill_at:
                    print(
                        "server still running after the grace period; killing its process group",
                        file=sys.stderr,
                        flush=True,
                    )
                    os.killpg(child.pid, signal.SIGKILL)
    finally:
        # Anything still in the child's process group (e.g. worker processes or
        # multiprocessing's resource tracker) gets a few seconds to exit, then SIGKILL.
        deadline = time.monotonic() + 5.0
        while _group_members(child.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _group_members(child.pid)
        if left:
            print(
                f"killing leftover processes {left} in the server's process group",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        if cleanup:
            cleanup()
    return rc if rc >= 0 else 128 - rc
