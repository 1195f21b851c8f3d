"""The verifier and a host agent as real gRPC servers on loopback, over a real swtpm.

The host's "kernel" is emulated: each measurement is appended to a binary IMA
log file and extended into the swtpm's PCR 10, exactly as IMA does. Each
tampering below must be caught with its reason, in a signed verdict.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, evidence_pb2, verifier_pb2, verifier_pb2_grpc
from services.policy import runtime_policy
from services.policy.api.servicers import HostAgentServicer, VerifierServicer
from services.policy.ima import log
from services.policy.ima.appraisal import key_id
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.swtpm import Swtpm
from services.policy.verifier import Verifier, check_verdict
from tests.policy.host_harness import boot_entry, channel, enroll, serve

HOST = "node-1"
IMA_KEY = ec.generate_private_key(ec.SECP256R1())
SELECTION = [
    evidence_pb2.PcrSelection(bank="sha256", pcrs=[0, 1, 2, 3, 4, 5, 6, 7, 10]),
    evidence_pb2.PcrSelection(bank="sha1", pcrs=[10]),
]


def _sig(digest: bytes) -> bytes:
    signature = IMA_KEY.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return struct.pack(">BBB4sH", 3, 2, 4, key_id(IMA_KEY.public_key()), len(signature)) + signature


@dataclass
class Host:
    agent: TpmAgent
    log_path: Path
    allowlist: dict[str, list[str]]

    def measure(
        self, path: str, content: bytes, template: str = "ima-ng", signed: bool = False
    ) -> None:
        digest = hashlib.sha256(content).digest()
        entry_raw = log.encode_entry(
            10, template, path, "sha256", digest, _sig(digest) if signed else b""
        )
        with self.log_path.open("ab") as out:
            out.write(entry_raw)
        entry = log.parse(entry_raw)[0]
        self._ascii(entry)
        self.agent.extend(
            10, {"sha256": entry.digest_for_bank("sha256"), "sha1": entry.digest_for_bank("sha1")}
        )
        if not signed:
            self.allowlist.setdefault(path, []).append(digest.hex())

    def _ascii(self, entry: log.Entry) -> None:
        """The kernel's ASCII rendering of the same entry, next to the binary log."""
        with self.log_path.with_name("ascii_runtime_measurements").open("a") as out:
            out.write(log.ascii_line(entry) + "\n")


@dataclass
class Env:
    host: Host
    verifier: verifier_pb2_grpc.VerifierStub
    agent: agent_pb2_grpc.HostAgentStub
    verifier_key: ec.EllipticCurvePublicKey

    def evidence(
        self, offset: int = 0, ascii: bool = False
    ) -> tuple[bytes, evidence_pb2.HostEvidence]:
        nonce = self.verifier.GetNonce(verifier_pb2.GetNonceRequest(host=HOST), timeout=10).nonce
        request = agent_pb2.GetEvidenceRequest(
            nonce=nonce, pcr_selection=SELECTION, ima_offset=offset, ascii=ascii
        )
        return nonce, self.agent.GetEvidence(request, timeout=10)

    def verdict(
        self, nonce: bytes, evidence: evidence_pb2.HostEvidence, policy: str = "prod"
    ) -> evidence_pb2.Verdict:
        signed = self.verifier.Verify(
            verifier_pb2.VerifyRequest(nonce=nonce, evidence=evidence, runtime_policy=policy),
            timeout=30,
        )
        import time  # noqa: PLC0415

        return check_verdict(signed, self.verifier_key, time.time())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("verifier")
    swtpm = Swtpm(base / "swtpm")
    swtpm.start()
    agent = TpmAgent(swtpm.tcti)
    host = Host(agent, base / "binary_runtime_measurements", {})
    raw, entry = boot_entry(agent)
    aggregate = entry.file_digest
    agent_server, agent_port = serve(
        lambda s: agent_pb2_grpc.add_HostAgentServicer_to_server(
            HostAgentServicer(HOST, agent, host.log_path), s
        )
    )
    # The real boot_aggregate entry, then a few binaries, signed and unsigned.
    host.log_path.write_bytes(raw)
    host._ascii(entry)
    agent.extend(
        10, {"sha256": entry.digest_for_bank("sha256"), "sha1": entry.digest_for_bank("sha1")}
    )
    for i in range(5):
        host.measure(f"/usr/bin/tool{i}", f"tool {i}".encode())
    host.measure("/usr/lib/libsigned.so", b"signed library", template="ima-sig", signed=True)
    key_pem = (
        IMA_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    document = {
        "allowlist": host.allowlist,
        "ima_keys": [key_pem],
        "excludes": ["/var/log/.*"],
        "boot_aggregate": [aggregate.hex()],
    }
    wrong_boot = dict(document, boot_aggregate=["00" * 32])
    policies = {
        "prod": runtime_policy.load("prod", json.dumps(document).encode()),
        "wrong-boot": runtime_policy.load("wrong-boot", json.dumps(wrong_boot).encode()),
    }
    signing = ec.generate_private_key(ec.SECP256R1())
    verifier = Verifier([p.read_bytes() for p in swtpm.manufacturer_ca], policies, signing)
    verifier_server, verifier_port = serve(
        lambda s: verifier_pb2_grpc.add_VerifierServicer_to_server(VerifierServicer(verifier), s)
    )
    with channel(agent_port) as a, channel(verifier_port) as v:
        e = Env(
            host,
            verifier_pb2_grpc.VerifierStub(v),
            agent_pb2_grpc.HostAgentStub(a),
            signing.public_key(),
        )
        enroll(HOST, e.verifier, e.agent)
        yield e
    agent_server.stop(0)
    verifier_server.stop(0)
    agent.close()
    swtpm.stop()


def test_good_host_is_trusted_and_verdict_is_signed(env: Env) -> None:
    nonce, evidence = env.evidence()
    verdict = env.verdict(nonce, evidence)
    assert verdict.trusted, verdict.findings
    assert verdict.ima_entries == 7
    assert verdict.host == HOST
    assert len(verdict.ek_digest) == 32


def _removed(raw: bytes) -> bytes:
    b = log.spans(raw)
    return raw[: b[2][0]] + raw[b[2][1] :]


def _reordered(raw: bytes) -> bytes:
    b = log.spans(raw)
    return raw[: b[1][0]] + raw[b[2][0] : b[2][1]] + raw[b[1][0] : b[1][1]] + raw[b[2][1] :]


def _added(raw: bytes) -> bytes:
    return raw + log.encode_entry(
        10, "ima-ng", "/usr/bin/tool0", "sha256", hashlib.sha256(b"tool 0").digest()
    )


def _edited(raw: bytes) -> bytes:
    return raw.replace(b"/usr/bin/tool3", b"/usr/bin/tool9", 1)


def _unknown_template(raw: bytes) -> bytes:
    return raw.replace(b"ima-sig", b"ima-xyz", 1)


def _with_log(mutate: Callable[[bytes], bytes]) -> Callable[[evidence_pb2.HostEvidence], None]:
    def apply(evidence: evidence_pb2.HostEvidence) -> None:
        evidence.ima_log = mutate(evidence.ima_log)

    return apply


def _forged_pcr(evidence: evidence_pb2.HostEvidence) -> None:
    evidence.pcr_values[0].value = bytes(len(evidence.pcr_values[0].value))


TAMPERING = [
    ("entry-removed", _with_log(_removed), "ima.pcr10"),
    ("entries-reordered", _with_log(_reordered), "ima.pcr10"),
    ("entry-added", _with_log(_added), "ima.pcr10"),
    ("entry-edited", _with_log(_edited), "ima.log"),
    ("truncated-log", _with_log(lambda raw: raw[:-5]), "ima.log"),
    ("unknown-template", _with_log(_unknown_template), "ima.log"),
    ("pcr-values-forged", _forged_pcr, "quote.pcr_digest"),
]


@pytest.mark.parametrize(
    ("mutate", "reason"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_tampered_evidence_fails_with_reason(
    env: Env, mutate: Callable[[evidence_pb2.HostEvidence], None], reason: str
) -> None:
    nonce, evidence = env.evidence()
    mutate(evidence)
    verdict = env.verdict(nonce, evidence)
    assert not verdict.trusted
    assert verdict.findings[0].reason == reason


def test_ascii_log_from_the_agent_is_trusted(env: Env) -> None:
    nonce, evidence = env.evidence(ascii=True)
    assert not evidence.ima_log
    assert evidence.ima_log_ascii.count("\n") >= 7
    verdict = env.verdict(nonce, evidence)
    assert verdict.trusted, verdict.findings


def test_incremental_verification_sends_only_new_entries(env: Env) -> None:
    nonce, evidence = env.evidence()
    first = env.verdict(nonce, evidence)
    assert first.trusted
    env.host.measure("/usr/bin/newtool", b"new tool", template="ima-sig", signed=True)
    nonce, evidence = env.evidence(offset=first.ima_entries)
    assert len(log.parse(evidence.ima_log, first_index=first.ima_entries)) == 1  # just the new one
    second = env.verdict(nonce, evidence)
    assert second.trusted, second.findings
    assert second.ima_entries == first.ima_entries + 1


def test_boot_aggregate_mismatch(env: Env) -> None:
    nonce, evidence = env.evidence()
    verdict = env.verdict(nonce, evidence, policy="wrong-boot")
    assert not verdict.trusted
    assert verdict.findings[0].reason == "ima.boot_aggregate"


def test_bad_ima_signature(env: Env) -> None:
    nonce, evidence = env.evidence()
    bounds = log.spans(evidence.ima_log)
    signed = next(i for i, e in enumerate(log.parse(evidence.ima_log)) if e.template == "ima-sig")
    start, end = bounds[signed]
    entry = log.parse(evidence.ima_log[start:end])[0]
    forged_sig = entry.signature[:-1] + bytes([entry.signature[-1] ^ 1])
    forged = log.encode_entry(10, "ima-sig", entry.path, "sha256", entry.file_digest, forged_sig)
    evidence.ima_log = evidence.ima_log[:start] + forged + evidence.ima_log[end:]
    verdict = env.verdict(nonce, evidence)
    assert not verdict.trusted
    # The signature field is part of the template data, so the PCR replay catches it first.
    assert verdict.findings[0].reason == "ima.pcr10"


def test_replayed_nonce(env: Env) -> None:
    nonce, evidence = env.evidence()
    assert env.verdict(nonce, evidence).trusted
    again = env.verdict(nonce, evidence)
    assert not again.trusted
    assert again.findings[0].reason == "quote.nonce"


def test_file_not_in_allowlist_and_signatures(env: Env) -> None:
    env.host.measure("/usr/bin/evil", b"evil")
    env.host.allowlist.pop("/usr/bin/evil")
    nonce, evidence = env.evidence()
    verdict = env.verdict(nonce, evidence)
    assert not verdict.trusted
    finding = verdict.findings[0]
    # The policy admits allowlisted or signed files: this one is neither.
    assert (finding.reason, finding.message, finding.path) == (
        "ima.signature",
        "missing IMA signature",
        "/usr/bin/evil",
    )


def test_oversized_log_is_resource_exhausted(env: Env) -> None:
    nonce, evidence = env.evidence()
    evidence.ima_log = evidence.ima_log + bytes(log.MAX_LOG_BYTES)
    with pytest.raises(grpc.RpcError) as caught:
        env.verdict(nonce, evidence)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _identity(env: Env) -> agent_pb2.GetIdentityResponse:
    return env.agent.GetIdentity(agent_pb2.GetIdentityRequest(), timeout=10)


def test_enrolment_with_unbound_ak_refused(env: Env) -> None:
    identity = _identity(env)
    request = verifier_pb2.BeginEnrollmentRequest(
        host="impostor",
        ek_certificate=identity.ek_certificate,
        ek_public=identity.ek_public,
        ak_public=identity.ak_public,
    )
    env.verifier.BeginEnrollment(request, timeout=10)
    # The impostor cannot run ActivateCredential on this TPM; it answers with a guess.
    complete = verifier_pb2.CompleteEnrollmentRequest(host="impostor", activated_secret=bytes(32))
    with pytest.raises(grpc.RpcError) as caught:
        env.verifier.CompleteEnrollment(complete, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "ak.activation" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        env.verifier.GetNonce(verifier_pb2.GetNonceRequest(host="impostor"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_ek_from_unknown_manufacturer_refused(env: Env, tmp_path: Path) -> None:
    other = Swtpm(tmp_path / "other")
    other.start()
    try:
        foreign = TpmAgent(other.tcti)
        request = verifier_pb2.BeginEnrollmentRequest(
            host="foreign", ek_certificate=foreign.ek_certificate,
            ek_public=bytes(foreign.ek_public.marshal()), ak_public=bytes(foreign.ak_public.marshal()),
        )  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            env.verifier.BeginEnrollment(request, timeout=10)
        foreign.close()
    finally:
        other.stop()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "ek.chain" in (caught.value.details() or "")
