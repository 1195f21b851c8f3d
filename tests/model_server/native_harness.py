"""The native data plane on its own: a test CA, a Start message, the child, stubs.

Real C++ child, real TLS on loopback, real certificates from the ACS's own CA
code (a CA created for the test, as the ACS creates its own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from s3ml.model_server.v1 import dataplane_pb2 as dp
from services.attest.ca import CertificateAuthority, key_pem, pem, utcnow
from services.model_server import dataplane
from tests.model_server.harness import ZOO

MODEL = "mobilenet_v1_int8"
SERVER_NAME = "zoo.s3ml.local"


@dataclass(frozen=True)
class Party:
    key_pem: bytes
    cert_pem: bytes
    serial: int


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: Party
    client: Party
    admin: Party

    @property
    def ca_pem(self) -> bytes:
        return pem(self.ca.cert)


def _party(ca: CertificateAuthority, kind: str) -> Party:
    key = ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    if kind == "service":
        cert = ca.issue_service("zoo", [SERVER_NAME], key.public_key(), now)
    elif kind == "admin":
        cert = ca.issue_admin("ops", key.public_key(), now)
    else:
        cert = ca.issue_client("alice", key.public_key(), now)
    return Party(key_pem(key), pem(cert), cert.serial_number)


def make_pki() -> Pki:
    ca = CertificateAuthority.create(utcnow(), "test ACS")
    return Pki(ca, _party(ca, "service"), _party(ca, "client"), _party(ca, "admin"))


def _spec(raw: dict[str, object]) -> dp.TensorSpec:
    shape = raw["shape"]
    assert isinstance(shape, list)
    return dp.TensorSpec(name=str(raw["name"]), datatype=str(raw["datatype"]), shape=shape)


def model(name: str = MODEL) -> dp.Model:
    meta = json.loads((ZOO / f"{name}.json").read_text())
    return dp.Model(
        name=name,
        version="1",
        platform="tflite",
        tflite=(ZOO / f"{name}.tflite").read_bytes(),
        inputs=[_spec(t) for t in meta["inputs"]],
        outputs=[_spec(t) for t in meta["outputs"]],
    )


def start_message(
    pki: Pki, peers: dp.PeerPolicy, served: dp.Model | None = None, **limits: int
) -> dp.Start:
    settings = {
        "interpreters_per_model": 1,
        "threads_per_interpreter": 1,
        "workers": 4,
        "max_queue": 4,
        "max_batch": 4,
        "max_message_bytes": 16 << 20,
    }
    settings.update(limits)
    return dp.Start(
        listen="127.0.0.1:0",
        tls_chain_pem=pki.server.cert_pem,
        tls_key_pem=pki.server.key_pem,
        ca_pem=pki.ca_pem,
        models=[served or model()],
        limits=dp.Limits(**settings),
        peers=peers,
        server_version="test",
    )


class Reported:
    """The calls the child reports (the supervisor makes spans of them)."""

    def __init__(self) -> None:
        self.calls: list[dp.CallRecord] = []

    def __call__(self, calls: dp.Calls) -> None:
        self.calls.extend(calls.calls)


def launch(start: dp.Start, reported: Reported | None = None) -> dataplane.NativeDataPlane:
    return dataplane.NativeDataPlane(start, reported or Reported())


def channel(port: int, pki: Pki, who: Party) -> grpc.Channel:
    """mTLS to a data plane on `port` as `who`."""
    creds = grpc.ssl_channel_credentials(pki.ca_pem, who.key_pem, who.cert_pem)
    return grpc.secure_channel(
        f"127.0.0.1:{port}", creds, [("grpc.ssl_target_name_override", SERVER_NAME)]
    )


def stub_for(
    plane: dataplane.NativeDataPlane, pki: Pki, who: Party
) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel(plane.port, pki, who))
