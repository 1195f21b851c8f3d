"""A real ACS on loopback for tests and benchmarks, with helpers to talk to it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from s3ml.attest.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from services.attest import client
from services.attest.ca import utcnow
from services.attest.config import parse
from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.server import DEFAULT_MANIFEST, RunningAcs, sim_signer, start
from services.attest.sim.pki import SimPki

MODEL_MRENCLAVE = hashlib.sha256(b"s3ml model server, build under test").digest()
SERVICE = "mobilenet-v1-int8"


def expected_acs_mrenclave() -> bytes:
    """The ACS measurement the build computed (//enclave_manifests:acs)."""
    return bytes.fromhex(DEFAULT_MANIFEST.with_suffix(".mrenclave").read_text().strip())


@dataclass
class AcsEnv:
    running: RunningAcs
    state: Path
    sim_dir: Path
    trusted: client.TrustedAcs
    admin: grpc.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.public_port}"

    @property
    def registry(self) -> registry_pb2_grpc.RegistryStub:
        return registry_pb2_grpc.RegistryStub(self.admin)

    def model_platform(
        self,
        mrenclave: bytes = MODEL_MRENCLAVE,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
    ) -> SimPlatform:
        signer = sim_signer(self.sim_dir)
        enclave = SimEnclave(mrenclave, signer, isv_prod_id, isv_svn, debug)
        return SimPlatform(self.sim_dir, enclave)

    def register(self, name: str = SERVICE, **policy: object) -> registry_pb2.ServiceInfo:
        request = registry_pb2.RegisterServiceRequest(
            name=name,
            dns_names=[f"{name}.s3ml.local", "localhost"],
            policy=types_pb2.AppraisalPolicy(mrenclave=[MODEL_MRENCLAVE], **policy),  # type: ignore[arg-type]
            generated_secrets=["model/key"],
            config=b"threads: 2\n",
        )
        return self.registry.RegisterService(request, timeout=10)


def pin_for(sim_dir: Path) -> client.AcsPin:
    return client.AcsPin(expected_acs_mrenclave(), SimPki.load(sim_dir).root_pem)


def acs_args(state: Path, sim_dir: Path) -> list[str]:
    return [
        "--state-dir", str(state), "--sim-dir", str(sim_dir),
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
    ]  # fmt: skip


@contextmanager
def running_acs(base: Path, extra_args: tuple[str, ...] = ()) -> Iterator[AcsEnv]:
    state, sim_dir = base / "acs", base / "sim"
    if not (sim_dir / "root.pem").exists():
        SimPki.create(sim_dir)
    running = start(parse([*acs_args(state, sim_dir), *extra_args]))
    trusted = client.connect(f"127.0.0.1:{running.public_port}", pin_for(sim_dir), utcnow)
    admin = trusted.admin_channel(f"127.0.0.1:{running.admin_port}", state / "admin")
    try:
        yield AcsEnv(running, state, sim_dir, trusted, admin)
    finally:
        admin.close()
        trusted.close()
        running.stop(0)


def srcdir() -> Path:
    """The workspace inside runfiles (tests and `bazel run` binaries alike)."""
    return Path(__file__).absolute().parents[2]
