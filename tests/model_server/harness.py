"""A real ACS and a real model server on loopback, serving the sealed zoo over mTLS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import registry_pb2, types_pb2
from services.attest.ca import key_pem
from services.model_server import config as server_config
from services.model_server.repository import seal_model, secret_name
from tests.attest.acs_harness import AcsEnv, running_acs, srcdir

if TYPE_CHECKING:  # the server imports the `inference` protos; tritonclient tests must not
    from services.model_server.server import RunningServer

MODELS = (
    "mobilenet_v1_f32",
    "mobilenet_v1_int8",
    "efficientnet_lite0_f32",
    "efficientnet_lite0_int8",
)
SERVICE = "zoo"
# Which data plane the servers under test use: the same suites run on both
# (the *_native targets set S3ML_TEST_DATA_PLANE=native).
DATA_PLANE = os.environ.get("S3ML_TEST_DATA_PLANE", "python")
ZOO = srcdir() / "services" / "model_server" / "zoo"


def model_server_mrenclave() -> bytes:
    path = srcdir() / "enclave_manifests" / "model_server.mrenclave"
    return bytes.fromhex(path.read_text().strip())


def metadata(model: str) -> dict[str, object]:
    return dict(json.loads((ZOO / f"{model}.json").read_text()))


@dataclass
class ClientCredentials:
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)


@dataclass
class Serving:
    acs: AcsEnv
    server: RunningServer | None
    models_dir: Path
    client: ClientCredentials

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def channel(self, creds: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        options = [
            ("grpc.ssl_target_name_override", f"{SERVICE}.s3ml.local"),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        return grpc.secure_channel(self.target, creds or self.client.channel_credentials(), options)


def seal_zoo(models_dir: Path, models: tuple[str, ...]) -> dict[str, bytes]:
    keys = {m: os.urandom(32) for m in models}
    for model in models:
        seal_model(ZOO / f"{model}.tflite", ZOO / f"{model}.json", models_dir, keys[model])
    return keys


def register(acs: AcsEnv, keys: dict[str, bytes], mrenclave: bytes) -> None:
    acs.registry.RegisterService(
        registry_pb2.RegisterServiceRequest(
            name=SERVICE,
            dns_names=[f"{SERVICE}.s3ml.local", "localhost"],
            policy=types_pb2.AppraisalPolicy(mrenclave=[mrenclave]),
            provided_secrets=[
                types_pb2.Secret(name=secret_name(m), value=k) for m, k in keys.items()
            ],
        ),
        timeout=10,
    )


def client_credentials(acs: AcsEnv, name: str = "tester") -> ClientCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    issued = acs.registry.IssueClientCertificate(
        registry_pb2.IssueClientCertificateRequest(name=name, public_key=spki), timeout=10
    )
    return ClientCredentials(
        key_pem(key), issued.certificate_pem.encode(), issued.ca_certificate_pem.encode()
    )


def server_args(acs: AcsEnv, models_dir: Path, models: tuple[str, ...], *extra: str) -> list[str]:
    args = [
        "--service", SERVICE, "--models-dir", str(models_dir), "--listen", "127.0.0.1:0",
        "--acs", acs.target, "--acs-mrenclave", acs.trusted.bundle.acs_measurement.mrenclave.hex(),
        "--sim-dir", str(acs.sim_dir), "--node", "node-1", "--replica", "replica-0",
    ]  # fmt: skip
    for model in models:
        args += ["--model", model]
    return [*args, "--data-plane", DATA_PLANE, *extra]


@contextmanager
def serving(
    base: Path, models: tuple[str, ...] = MODELS, *extra: str, start_server: bool = True
) -> Iterator[Serving]:
    from services.model_server.server import start  # noqa: PLC0415

    with running_acs(base) as acs:
        models_dir = base / "models"
        register(acs, seal_zoo(models_dir, models), model_server_mrenclave())
        running = (
            start(server_config.parse(server_args(acs, models_dir, models, *extra)))
            if start_server
            else None
        )
        try:
            yield Serving(acs, running, models_dir, client_credentials(acs))
        finally:
            if running is not None:
                running.stop(0)
