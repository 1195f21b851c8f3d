"""Mutually attested gRPC between two provisioned replicas, plus ACS telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from s3ml.attest.v1 import registry_pb2, trust_pb2, trust_pb2_grpc
from services.attest import client, mtls
from services.attest.ca import SPIFFE_PREFIX
from tests.attest.acs_harness import SERVICE, AcsEnv, running_acs

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    with running_acs(tmp_path_factory.mktemp("acs")) as acs_env:
        acs_env.register()
        yield acs_env


class _Echo(trust_pb2_grpc.TrustServicer):
    """A stand-in replica API: answers with the generation it was asked about."""

    def GetTrustBundle(  # noqa: N802
        self, request: trust_pb2.GetTrustBundleRequest, context: grpc.ServicerContext
    ) -> trust_pb2.TrustBundle:  # type: ignore[name-defined]
        from s3ml.attest.v1 import types_pb2  # noqa: PLC0415

        return types_pb2.TrustBundle(generation=request.known_generation)


def _serve(
    server_ident: client.InstanceIdentity, revocations: mtls.RevocationList
) -> tuple[grpc.Server, int]:
    interceptor = mtls.PeerPolicyInterceptor(
        mtls.has_role(f"{SPIFFE_PREFIX}service/{SERVICE}/instance/"), revocations, "replica API"
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[interceptor])
    trust_pb2_grpc.add_TrustServicer_to_server(_Echo(), server)
    creds = mtls.server_credentials(
        server_ident.service_chain_pem, server_ident.service_key_pem, server_ident.ca_pem
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


def _call(port: int, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", f"{SERVICE}.s3ml.local")]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options) as channel:
        try:
            reply = trust_pb2_grpc.TrustStub(channel).GetTrustBundle(
                trust_pb2.GetTrustBundleRequest(known_generation=7), timeout=5
            )
        except grpc.RpcError as err:
            return err.code()
    assert reply.generation == 7
    return grpc.StatusCode.OK


def test_mutually_attested_grpc(env: AcsEnv, tmp_path: Path) -> None:
    server_ident = client.provision(env.trusted, env.model_platform(), SERVICE, "server", "n1")
    caller = client.provision(env.trusted, env.model_platform(), SERVICE, "caller", "n2")
    revocations = mtls.RevocationList()
    ca = x509.load_pem_x509_certificate(server_ident.ca_pem)
    revocations.update(server_ident.crl_pem, ca)
    server, port = _serve(server_ident, revocations)
    try:
        attested = mtls.channel_credentials(
            caller.ca_pem, caller.instance_cert_pem, caller.instance_key_pem
        )
        assert _call(port, attested) == grpc.StatusCode.OK
        anonymous = mtls.channel_credentials(caller.ca_pem)
        assert _call(port, anonymous) == grpc.StatusCode.UNAVAILABLE  # handshake refused
        revoke = registry_pb2.RevokeMeasurementRequest(
            mrenclave=caller.measurement.mrenclave, reason="test"
        )
        env.registry.RevokeMeasurement(revoke, timeout=5)
        bundle = trust_pb2_grpc.TrustStub(env.trusted.channel).GetTrustBundle(
            trust_pb2.GetTrustBundleRequest(), timeout=5
        )
        revocations.update(bundle.crl_pem.encode(), ca)
        assert _call(port, attested) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)


def test_attestation_spans_and_metrics(tmp_path: Path) -> None:
    EXPORTER.clear()
    with running_acs(tmp_path) as fresh:
        fresh.register()
        before = (
            REGISTRY.get_sample_value(
                "s3ml_acs_attestations_total", {"service": SERVICE, "result": "OK"}
            )
            or 0.0
        )
        ident = client.provision(fresh.trusted, fresh.model_platform(), SERVICE, "r", "n")
        after = REGISTRY.get_sample_value(
            "s3ml_acs_attestations_total", {"service": SERVICE, "result": "OK"}
        )
    assert after == before + 1
    names = {span.name for span in EXPORTER.get_finished_spans()}
    assert {"acs.attest", "acs.verify_quote", "acs.appraise", "acs.provision"} <= names
    attest = next(s for s in EXPORTER.get_finished_spans() if s.name == "acs.attest")
    assert attest.attributes is not None
    assert attest.attributes["s3ml.result"] == "accepted"
    assert attest.attributes["s3ml.service"] == SERVICE
    dumped = "".join(span.to_json() for span in EXPORTER.get_finished_spans())
    assert ident.secrets["model/key"].hex() not in dumped
    assert "PRIVATE KEY" not in dumped
