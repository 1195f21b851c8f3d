"""The ACS gRPC service on loopback: trust bootstrap, provisioning, one identity, bad input."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    provisioning_pb2,
    provisioning_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
    types_pb2,
)
from s3ml.common.v1 import platform_pb2
from services.attest import client
from services.attest.appraisal import binding
from services.attest.ca import role_uri, utcnow
from services.attest.platform.sim import SimPlatform
from services.attest.sim.pki import SimPki
from tests.attest.acs_harness import (
    MODEL_MRENCLAVE,
    SERVICE,
    AcsEnv,
    expected_acs_mrenclave,
    running_acs,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    with running_acs(tmp_path_factory.mktemp("acs")) as acs_env:
        acs_env.register()
        yield acs_env


def test_acs_measurement_comes_from_the_build(env: AcsEnv) -> None:
    assert env.trusted.bundle.acs_measurement.mrenclave == expected_acs_mrenclave()


def test_status_says_simulated(env: AcsEnv) -> None:
    stub = provisioning_pb2_grpc.ProvisioningStub(env.trusted.channel)
    status = stub.Status(platform_pb2.StatusRequest(), timeout=5)
    assert status.platform == platform_pb2.PLATFORM_SIM
    assert "SIMULATED" in status.platform_warning


def test_client_refuses_wrong_acs_measurement(env: AcsEnv) -> None:
    pin = client.AcsPin(bytes(32), SimPki.load(env.sim_dir).root_pem)
    with pytest.raises(client.TrustError, match="not the pinned one"):
        client.connect(env.target, pin, utcnow)


def test_client_refuses_acs_under_other_root(env: AcsEnv, tmp_path: Path) -> None:
    pin = client.AcsPin(expected_acs_mrenclave(), SimPki.create(tmp_path / "x").root_pem)
    with pytest.raises(client.TrustError, match="pinned root"):
        client.connect(env.target, pin, utcnow)


def _provision(env: AcsEnv, instance: str = "replica-0") -> client.InstanceIdentity:
    return client.provision(env.trusted, env.model_platform(), SERVICE, instance, "node-1")


def test_provisioning_delivers_identity_and_secret(env: AcsEnv) -> None:
    ident = _provision(env)
    chain = x509.load_pem_x509_certificates(ident.service_chain_pem)
    ca = x509.load_pem_x509_certificate(env.trusted.bundle.ca_certificate_pem.encode())
    chain[0].verify_directly_issued_by(ca)
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{SERVICE}.s3ml.local" in san.get_values_for_type(x509.DNSName)
    key = serialization.load_pem_private_key(ident.service_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == chain[0].public_key()
    assert len(ident.secrets["model/key"]) == 32
    assert ident.config == b"threads: 2\n"
    instance_cert = x509.load_pem_x509_certificate(ident.instance_cert_pem)
    assert role_uri(instance_cert).endswith(f"/service/{SERVICE}/instance/replica-0")


def test_fifty_concurrent_first_attestations_yield_one_identity(env: AcsEnv) -> None:
    name = "efficientnet-lite0-f32"
    env.register(name)
    barrier = threading.Barrier(50)
    results: list[client.InstanceIdentity] = []
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(
                client.provision(env.trusted, env.model_platform(), name, f"r{i}", "node-1")
            )
        except BaseException as err:  # collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert len(results) == 50
    assert len({r.service_chain_pem for r in results}) == 1
    assert len({r.service_key_pem for r in results}) == 1
    assert len({r.secrets["model/key"] for r in results}) == 1
    info = env.registry.GetService(registry_pb2.GetServiceRequest(name=name), timeout=5)
    assert info.identity_generation == 1
    creates = _audit(env, name, "identity.create")
    assert len(creates) == 1


def _audit(env: AcsEnv, subject: str, prefix: str) -> list[types_pb2.AuditEvent]:
    stub = audit_pb2_grpc.AuditStub(env.admin)
    request = audit_pb2.QueryAuditRequest(subject=subject, action_prefix=prefix, limit=1000)
    return list(stub.QueryAudit(request, timeout=10).events)


# -- bad input: each a precise status, and nothing provisioned --------------------------------


def _attest_raw(
    env: AcsEnv,
    platform: SimPlatform,
    service: str = SERVICE,
    mutate: Callable[[bytes], bytes] = lambda q: q,
    key_der: bytes | None = None,
    bound_key: bytes | None = None,
    nonce: bytes | None = None,
    nonce_service: str | None = None,
) -> grpc.RpcError:
    stub = provisioning_pb2_grpc.ProvisioningStub(env.trusted.channel)
    spki = key_der or ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if nonce is None:
        ask = provisioning_pb2.GetNonceRequest(service=nonce_service or service)
        nonce = stub.GetNonce(ask, timeout=5).nonce
    quote = mutate(platform.quote(binding(bound_key or spki, nonce)))
    request = provisioning_pb2.AttestRequest(
        service=service, quote=quote, instance_public_key=spki, nonce=nonce, instance_name="bad"
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Attest(request, timeout=10)
    assert isinstance(caught.value, grpc.RpcError)
    return caught.value


def _flip(offset: int) -> Callable[[bytes], bytes]:
    return lambda q: q[:offset] + bytes([q[offset] ^ 1]) + q[offset + 1 :]


OTHER_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)

BAD_QUOTES: list[tuple[str, dict[str, object], grpc.StatusCode, str]] = [
    ("truncated", {"mutate": lambda q: q[:300]}, grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
    ("oversized", {"mutate": lambda q: q + bytes(70000)}, grpc.StatusCode.INVALID_ARGUMENT, "more than"),
    ("flipped-body", {"mutate": _flip(48 + 64)}, grpc.StatusCode.UNAUTHENTICATED, "signature"),
    ("flipped-signature", {"mutate": _flip(440)}, grpc.StatusCode.UNAUTHENTICATED, "signature"),
    ("key-not-bound", {"bound_key": OTHER_KEY}, grpc.StatusCode.PERMISSION_DENIED, "REPORTDATA"),
    ("malformed-der-key", {"key_der": b"\x30\x03\x02\x01\x00"}, grpc.StatusCode.INVALID_ARGUMENT, "instance_public_key"),
    ("unknown-service", {"service": "no-such-model", "nonce_service": SERVICE}, grpc.StatusCode.NOT_FOUND, "not registered"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [c[1:] for c in BAD_QUOTES],
    ids=[c[0] for c in BAD_QUOTES],
)
def test_bad_quote(
    env: AcsEnv, kwargs: dict[str, object], code: grpc.StatusCode, message: str
) -> None:
    err = _attest_raw(env, env.model_platform(), **kwargs)  # type: ignore[arg-type]
    assert err.code() == code
    assert message in (err.details() or "")


@pytest.mark.parametrize(
    ("enclave", "message"),
    [
        ({"mrenclave": hashlib.sha256(b"other build").digest()}, "not allowed by the policy"),
        ({"debug": True}, "DEBUG enclave refused"),
    ],
    ids=["wrong-mrenclave", "debug-enclave"],
)
def test_policy_refusals(env: AcsEnv, enclave: dict[str, Any], message: str) -> None:
    err = _attest_raw(env, env.model_platform(**enclave))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert message in (err.details() or "")


def test_lower_isvsvn_refused(env: AcsEnv) -> None:
    from services.attest.server import sim_signer  # noqa: PLC0415

    signer = types_pb2.SignerIdentity(
        mrsigner=sim_signer(env.sim_dir), isv_prod_id=7, min_isv_svn=5
    )
    env.registry.RegisterService(
        registry_pb2.RegisterServiceRequest(
            name="svn-gated", policy=types_pb2.AppraisalPolicy(signers=[signer])
        ),
        timeout=5,
    )
    old = env.model_platform(mrenclave=hashlib.sha256(b"v4").digest(), isv_prod_id=7, isv_svn=4)
    err = _attest_raw(env, old, service="svn-gated")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "below the policy minimum" in (err.details() or "")
    new = env.model_platform(mrenclave=hashlib.sha256(b"v5").digest(), isv_prod_id=7, isv_svn=5)
    assert client.provision(env.trusted, new, "svn-gated", "r", "n").generation == 1


def test_reused_nonce_refused(env: AcsEnv) -> None:
    stub = provisioning_pb2_grpc.ProvisioningStub(env.trusted.channel)
    nonce = stub.GetNonce(provisioning_pb2.GetNonceRequest(service=SERVICE), timeout=5).nonce
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    quote = env.model_platform().quote(binding(spki, nonce))
    attest = provisioning_pb2.AttestRequest(
        service=SERVICE, quote=quote, instance_public_key=spki, nonce=nonce, instance_name="twice"
    )
    stub.Attest(attest, timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Attest(attest, timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in (caught.value.details() or "")


def test_made_up_nonce_refused(env: AcsEnv) -> None:
    err = _attest_raw(env, env.model_platform(), nonce=bytes(32))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_quote_from_foreign_pki_refused(env: AcsEnv, tmp_path: Path) -> None:
    foreign_dir = tmp_path / "foreign"
    SimPki.create(foreign_dir)
    foreign = SimPlatform(foreign_dir, env.model_platform()._enclave)
    err = _attest_raw(env, foreign)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "pinned root" in (err.details() or "")


def test_bad_inputs_provisioned_nothing(tmp_path: Path) -> None:
    """Every refusal leaves the service without identity and logs only rejections."""
    with running_acs(tmp_path) as fresh:
        fresh.register()
        for _, kwargs, _, _ in BAD_QUOTES[:5]:
            _attest_raw(fresh, fresh.model_platform(), **kwargs)  # type: ignore[arg-type]
        info = fresh.registry.GetService(registry_pb2.GetServiceRequest(name=SERVICE), timeout=5)
        assert info.identity_generation == 0
        assert info.certificate_pem == ""
        actions = {e.action for e in _audit(fresh, SERVICE, "")}
        assert actions == {"service.register", "attest.reject"}


# -- administrative access ----------------------------------------------------------------


def test_admin_call_on_public_port_unauthenticated(env: AcsEnv) -> None:
    stub = registry_pb2_grpc.RegistryStub(env.trusted.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListServices(registry_pb2.ListServicesRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _list_on_admin_port(env: AcsEnv, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", env.trusted.server_name)]
    target = f"127.0.0.1:{env.running.admin_port}"
    with (
        grpc.secure_channel(target, creds, options) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        registry_pb2_grpc.RegistryStub(channel).ListServices(
            registry_pb2.ListServicesRequest(), timeout=5
        )
    return caught.value.code()


def test_admin_port_without_certificate_refused(env: AcsEnv) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=env.trusted.cert_pem)
    assert _list_on_admin_port(env, creds) == grpc.StatusCode.UNAVAILABLE


def test_instance_certificate_is_not_admin(env: AcsEnv) -> None:
    ident = _provision(env, "sneaky")
    creds = grpc.ssl_channel_credentials(
        root_certificates=env.trusted.cert_pem,
        private_key=ident.instance_key_pem,
        certificate_chain=ident.instance_cert_pem,
    )
    assert _list_on_admin_port(env, creds) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (registry_pb2.RegisterServiceRequest(name="Bad_Name", policy=types_pb2.AppraisalPolicy(mrenclave=[MODEL_MRENCLAVE])), grpc.StatusCode.INVALID_ARGUMENT),
        (registry_pb2.RegisterServiceRequest(name="no-policy"), grpc.StatusCode.INVALID_ARGUMENT),
        (registry_pb2.RegisterServiceRequest(name="short-mr", policy=types_pb2.AppraisalPolicy(mrenclave=[b"x"])), grpc.StatusCode.INVALID_ARGUMENT),
        (registry_pb2.RegisterServiceRequest(name="bad-dns", dns_names=["-x-"], policy=types_pb2.AppraisalPolicy(mrenclave=[MODEL_MRENCLAVE])), grpc.StatusCode.INVALID_ARGUMENT),
        (registry_pb2.RegisterServiceRequest(name=SERVICE, policy=types_pb2.AppraisalPolicy(mrenclave=[MODEL_MRENCLAVE])), grpc.StatusCode.ALREADY_EXISTS),
    ],
    ids=["bad-name", "no-policy", "short-mrenclave", "bad-dns", "duplicate"],
)  # fmt: skip
def test_bad_registration(
    env: AcsEnv, request_: registry_pb2.RegisterServiceRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        env.registry.RegisterService(request_, timeout=5)
    assert caught.value.code() == code


def test_revoked_measurement_cannot_attest_and_lands_on_crl(tmp_path: Path) -> None:
    with running_acs(tmp_path) as fresh:
        fresh.register()
        ident = _provision(fresh)
        revoke = registry_pb2.RevokeMeasurementRequest(mrenclave=MODEL_MRENCLAVE, reason="CVE")
        assert fresh.registry.RevokeMeasurement(revoke, timeout=5).revoked_certificates == 1
        err = _attest_raw(fresh, fresh.model_platform())
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in (err.details() or "")
        bundle = trust_pb2_grpc.TrustStub(fresh.trusted.channel).GetTrustBundle(
            trust_pb2.GetTrustBundleRequest(), timeout=5
        )
        crl = x509.load_pem_x509_crl(bundle.crl_pem.encode())
        serial = x509.load_pem_x509_certificate(ident.instance_cert_pem).serial_number
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_rotation_issues_new_identity_and_revokes_old(tmp_path: Path) -> None:
    with running_acs(tmp_path) as fresh:
        fresh.register()
        before = _provision(fresh)
        info = fresh.registry.RotateIdentity(
            registry_pb2.RotateIdentityRequest(name=SERVICE), timeout=5
        )
        assert info.identity_generation == 2
        after = _provision(fresh, "replica-1")
        assert after.service_chain_pem != before.service_chain_pem
        bundle = trust_pb2_grpc.TrustStub(fresh.trusted.channel).GetTrustBundle(
            trust_pb2.GetTrustBundleRequest(), timeout=5
        )
        crl = x509.load_pem_x509_crl(bundle.crl_pem.encode())
        old_serial = x509.load_pem_x509_certificates(before.service_chain_pem)[0].serial_number
        assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None


def test_audit_chain_verifies_and_never_holds_secrets(env: AcsEnv) -> None:
    ident = _provision(env, "auditor")
    verdict = audit_pb2_grpc.AuditStub(env.admin).VerifyChain(
        audit_pb2.VerifyChainRequest(), timeout=10
    )
    assert verdict.events > 3
    releases = _audit(env, SERVICE, "secret.release")
    assert releases
    assert all(list(e.secret_names) == ["model/key"] for e in releases)
    secret_hex = ident.secrets["model/key"].hex()
    for event in _audit(env, "", ""):
        assert secret_hex not in str(event)
        assert ident.service_key_pem.decode() not in str(event)
