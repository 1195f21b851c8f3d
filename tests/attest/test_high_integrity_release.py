"""high_integrity key release with a real TPM/IMA verifier, host agent and swtpm.

The host's IMA log is emulated (entries appended to a file and extended into
the swtpm's PCR 10, as the kernel does); the verifier and the agent are the
real servicers on loopback, and the ACS consumes the verifier's signed
verdict exactly as produced. A binary outside the allowlist makes the next
verdict fail, and the ACS then refuses the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, evidence_pb2, verifier_pb2, verifier_pb2_grpc
from services.attest.stakeholder.service import HostEvidence
from services.attest.stakeholder.workload import release_keys
from services.policy import runtime_policy
from services.policy.api.servicers import HostAgentServicer, VerifierServicer
from services.policy.ima import log
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.swtpm import Swtpm
from services.policy.verifier import Verifier
from tests.attest.acs_harness import AcsEnv, running_acs
from tests.attest.stakeholder_harness import GPU_CODE_HASH, Stakeholder, policies
from tests.policy.host_harness import boot_entry, channel, enroll, serve

HOST = "gpu-node-1"
SELECTION = [evidence_pb2.PcrSelection(bank="sha256", pcrs=[0, 1, 2, 3, 4, 5, 6, 7, 10])]
DATA = Stakeholder("data_owner")
CODE = Stakeholder.ecdsa("code_owner")
GPU = "code_owner/gpu"


@dataclass
class Env:
    acs: AcsEnv
    agent: TpmAgent
    ima_log: Path
    verifier: verifier_pb2_grpc.VerifierStub
    host_agent: agent_pb2_grpc.HostAgentStub

    def measure(self, path: str, content: bytes) -> None:
        """What IMA does for one file: append to the log, extend PCR 10."""
        digest = hashlib.sha256(content).digest()
        raw = log.encode_entry(10, "ima-ng", path, "sha256", digest)
        with self.ima_log.open("ab") as out:
            out.write(raw)
        entry = log.parse(raw)[0]
        self.agent.extend(10, {"sha256": entry.digest_for_bank("sha256")})

    def signed_verdict(self) -> bytes:
        nonce = self.verifier.GetNonce(verifier_pb2.GetNonceRequest(host=HOST), timeout=10).nonce
        evidence = self.host_agent.GetEvidence(
            agent_pb2.GetEvidenceRequest(nonce=nonce, pcr_selection=SELECTION), timeout=10
        )
        request = verifier_pb2.VerifyRequest(
            nonce=nonce, evidence=evidence, runtime_policy="gpu-nodes"
        )
        return self.verifier.Verify(request, timeout=30).SerializeToString()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("hi")
    swtpm = Swtpm(base / "swtpm")
    swtpm.start()
    agent = TpmAgent(swtpm.tcti)
    ima_log = base / "binary_runtime_measurements"
    first, entry = boot_entry(agent)
    aggregate = entry.file_digest
    ima_log.write_bytes(first)
    agent.extend(10, {"sha256": entry.digest_for_bank("sha256")})
    trainer = b"python3 training runtime"
    document = json.dumps(
        {
            "allowlist": {"/usr/bin/trainer": [hashlib.sha256(trainer).hexdigest()]},
            "boot_aggregate": [aggregate.hex()],
        }
    ).encode()
    host_policy = runtime_policy.load("gpu-nodes", document)
    signing = ec.generate_private_key(ec.SECP256R1())
    verifier = Verifier(
        [p.read_bytes() for p in swtpm.manufacturer_ca], {"gpu-nodes": host_policy}, signing
    )
    verifier_server, verifier_port = serve(
        lambda s: verifier_pb2_grpc.add_VerifierServicer_to_server(VerifierServicer(verifier), s)
    )
    agent_server, agent_port = serve(
        lambda s: agent_pb2_grpc.add_HostAgentServicer_to_server(
            HostAgentServicer(HOST, agent, ima_log), s
        )
    )
    key_file = base / "verifier.pem"
    key_file.write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with (
        channel(verifier_port) as v,
        channel(agent_port) as a,
        running_acs(base, ("--verdict-key", str(key_file))) as acs_env,
    ):
        e = Env(
            acs_env,
            agent,
            ima_log,
            verifier_pb2_grpc.VerifierStub(v),
            agent_pb2_grpc.HostAgentStub(a),
        )
        enroll(HOST, e.verifier, e.host_agent)
        e.measure("/usr/bin/trainer", trainer)
        stub = policies(acs_env.trusted.channel)
        data = DATA.policy("training_data", volumes=[{"path": "/data", "export": GPU}])
        gpu = CODE.policy(
            "gpu",
            security_level="high_integrity",
            integrity={"code_hash": GPU_CODE_HASH.hex()},
            operating_system={
                "hosts": [HOST],
                "runtime_policy": "gpu-nodes",
                "runtime_policy_digest": host_policy.digest.hex(),
            },
            volumes=[{"path": "/data", "import": "data_owner/training_data"}],
        )
        stub.SubmitPolicy(DATA.signed(data), timeout=10)
        stub.SubmitPolicy(CODE.signed(gpu), timeout=10)
        yield e
    agent_server.stop(0)
    verifier_server.stop(0)
    agent.close()
    swtpm.stop()


def test_passing_verdict_releases_the_data_key(env: Env) -> None:
    verdict = env.signed_verdict()
    keys = release_keys(env.acs.trusted.channel, GPU, host=HostEvidence(verdict, GPU_CODE_HASH))
    assert keys["/data"].access == "read"
    assert len(keys["/data"].key) == 32


def test_wrong_code_hash_gets_nothing(env: Env) -> None:
    evidence = HostEvidence(env.signed_verdict(), hashlib.sha256(b"other code").digest())
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.acs.trusted.channel, GPU, host=evidence)
    assert event.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_failed_verdict_after_an_unknown_binary_gets_nothing(env: Env) -> None:
    env.measure("/usr/local/bin/sniffer", b"reads GPU memory")
    verdict = env.signed_verdict()
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.acs.trusted.channel, GPU, host=HostEvidence(verdict, GPU_CODE_HASH))
    assert event.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "verdict failed" in str(event.value.details())
