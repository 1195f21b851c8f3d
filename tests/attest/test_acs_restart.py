"""`kill -9` of a real ACS process in the middle of an attestation storm.

After a restart on the same state directory, the service identity, its
secrets and the audit chain are intact, and two replicas provisioned after
the restart serve the very certificate issued before it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from s3ml.attest.v1 import audit_pb2, audit_pb2_grpc, registry_pb2, registry_pb2_grpc, types_pb2
from services.attest import client
from services.attest.ca import utcnow
from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.server import sim_signer
from services.attest.sim.pki import SimPki
from tests.attest.acs_harness import MODEL_MRENCLAVE, SERVICE, acs_args, pin_for, srcdir


@contextmanager
def acs_process(state: Path, sim_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    binary = srcdir() / "services" / "attest" / "acs"
    proc = subprocess.Popen(
        [str(binary), *acs_args(state, sim_dir)],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"ACS did not start: {line!r}"
        ports = dict(part.split("=") for part in line.split()[1:])
        yield proc, int(ports["public"]), int(ports["admin"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def _platform(sim_dir: Path) -> SimPlatform:
    return SimPlatform(sim_dir, SimEnclave(MODEL_MRENCLAVE, sim_signer(sim_dir)))


def _connect(sim_dir: Path, public: int) -> client.TrustedAcs:
    return client.connect(f"127.0.0.1:{public}", pin_for(sim_dir), utcnow)


def _register(trusted: client.TrustedAcs, admin_port: int, state: Path) -> None:
    with trusted.admin_channel(f"127.0.0.1:{admin_port}", state / "admin") as admin:
        registry_pb2_grpc.RegistryStub(admin).RegisterService(
            registry_pb2.RegisterServiceRequest(
                name=SERVICE,
                dns_names=["localhost"],
                policy=types_pb2.AppraisalPolicy(mrenclave=[MODEL_MRENCLAVE]),
                generated_secrets=["model/key"],
            ),
            timeout=10,
        )


def _verify_chain(trusted: client.TrustedAcs, admin_port: int, state: Path) -> int:
    with trusted.admin_channel(f"127.0.0.1:{admin_port}", state / "admin") as admin:
        stub = audit_pb2_grpc.AuditStub(admin)
        return stub.VerifyChain(audit_pb2.VerifyChainRequest(), timeout=30).events


def test_kill_nine_during_storm_keeps_identity_secrets_and_audit(tmp_path: Path) -> None:
    state, sim_dir = tmp_path / "acs", tmp_path / "sim"
    SimPki.create(sim_dir)
    platform = _platform(sim_dir)
    with acs_process(state, sim_dir) as (proc, public, admin_port):
        trusted = _connect(sim_dir, public)
        _register(trusted, admin_port, state)
        first = client.provision(trusted, platform, SERVICE, "replica-0", "node-1")
        stop = threading.Event()
        outcomes = {"ok": 0, "failed": 0}

        def storm(i: int) -> None:
            while not stop.is_set():
                try:
                    client.provision(trusted, platform, SERVICE, f"storm-{i}", "node-2")
                    outcomes["ok"] += 1
                except (grpc.RpcError, OSError):
                    outcomes["failed"] += 1
                    return

        threads = [threading.Thread(target=storm, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)  # in the middle of the storm
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        trusted.close()
        assert outcomes["ok"] > 0, "the storm never got going"

    with acs_process(state, sim_dir) as (_, public, admin_port):
        trusted = _connect(sim_dir, public)
        replicas = [
            client.provision(trusted, platform, SERVICE, f"after-{i}", f"node-{i}")
            for i in range(2)
        ]
        for replica in replicas:
            assert replica.service_chain_pem == first.service_chain_pem
            assert replica.service_key_pem == first.service_key_pem
            assert replica.secrets == first.secrets
            assert replica.generation == 1
        assert _verify_chain(trusted, admin_port, state) > outcomes["ok"]
        trusted.close()


def test_tampered_audit_log_detected(tmp_path: Path) -> None:
    state, sim_dir = tmp_path / "acs", tmp_path / "sim"
    SimPki.create(sim_dir)
    with acs_process(state, sim_dir) as (_, public, admin_port):
        trusted = _connect(sim_dir, public)
        _register(trusted, admin_port, state)
        client.provision(trusted, _platform(sim_dir), SERVICE, "r0", "n0")
        trusted.close()
    with sqlite3.connect(state / "acs.db") as db:  # the host edits an entry
        db.execute(
            "UPDATE log SET record = CAST(replace(CAST(record AS TEXT), 'r0@n0', 'r9@n9') AS BLOB)"
            " WHERE seq = 3"
        )
    with acs_process(state, sim_dir) as (_, public, admin_port):
        trusted = _connect(sim_dir, public)
        with pytest.raises(grpc.RpcError) as caught:
            _verify_chain(trusted, admin_port, state)
        assert caught.value.code() == grpc.StatusCode.DATA_LOSS
        assert "entry 3" in (caught.value.details() or "")
        trusted.close()


def test_state_files_are_private(tmp_path: Path) -> None:
    state, sim_dir = tmp_path / "acs", tmp_path / "sim"
    SimPki.create(sim_dir)
    with acs_process(state, sim_dir):
        pass
    for path in [state / "acs.db", state / "admin" / "admin.key", sim_dir / "root.key"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
