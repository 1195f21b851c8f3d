"""Host integrity of the emulated nodes: a swtpm, an emulated IMA kernel and a host agent each,
enrolled with and verified by the TPM/IMA verifier (Perun's "high integrity" path).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import grpc

from deploy.local.cluster import Cluster
from deploy.local.supervisor import Supervisor
from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, evidence_pb2, verifier_pb2, verifier_pb2_grpc
from services.policy.ima import log, replay
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.swtpm import Swtpm

SELECTION = [
    evidence_pb2.PcrSelection(bank="sha256", pcrs=[0, 1, 2, 3, 4, 5, 6, 7, 10]),
    evidence_pb2.PcrSelection(bank="sha1", pcrs=[10]),
]


def _boot(swtpm: Swtpm, files: list[Path], ima_log: Path) -> dict[str, list[str]]:
    """What the kernel does at boot: boot_aggregate, then measure each file into PCR 10."""
    agent = TpmAgent(swtpm.tcti)
    try:
        boot = agent.read_pcrs({"sha256": list(range(10))})
        aggregate = replay.boot_aggregate([boot[("sha256", i)] for i in range(10)], "sha256")
        raw = log.encode_entry(10, "ima-ng", "boot_aggregate", "sha256", aggregate)
        allow = {"boot_aggregate": [aggregate.hex()]}
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).digest()
            raw += log.encode_entry(10, "ima-ng", f"/opt/s3ml/{path.name}", "sha256", digest)
            allow[f"/opt/s3ml/{path.name}"] = [digest.hex()]
        for entry in log.parse(raw):
            agent.extend(10, {b: entry.digest_for_bank(b) for b in ("sha256", "sha1")})
    finally:
        agent.close()
    ima_log.parent.mkdir(parents=True, exist_ok=True)
    ima_log.write_bytes(raw)
    return allow


def start(
    cluster: Cluster, state: Path, sup: Supervisor, binaries: dict[str, Path], measured: list[Path]
) -> list[str]:
    """Starts every node's swtpm and agent and the verifier; returns one verdict line per node."""
    cas: list[Path] = []
    allow: dict[str, list[str]] = {}
    for node in range(cluster.nodes):
        home = state / "nodes" / f"node-{node}"
        swtpm = Swtpm(home / "swtpm")
        swtpm.start()
        assert swtpm.process is not None
        sup.adopt(f"swtpm-node-{node}", swtpm.process)
        allow.update(_boot(swtpm, measured, home / "binary_runtime_measurements"))
        cas += swtpm.manufacturer_ca
        sup.start(f"host-agent-node-{node}", [
            str(binaries["host_agent"]), "--host", f"node-{node}", "--tcti", swtpm.tcti,
            "--ima-log", str(home / "binary_runtime_measurements"),
            "--listen", f"127.0.0.1:{cluster.agent_port + node}",
            "--metrics-listen", f"127.0.0.1:{cluster.agent_metrics_port(node)}",
            *cluster.trace_flags(state, f"host-agent-node-{node}"),
        ])  # fmt: skip
    policy = state / "verifier" / "runtime-policy.json"
    policy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    policy.write_text(json.dumps({"allowlist": allow, "boot_aggregate": allow["boot_aggregate"]}))
    args = [str(binaries["verifier"]), "--state-dir", str(state / "verifier"), "--policy", f"s3ml={policy}",
            "--listen", f"127.0.0.1:{cluster.verifier_port}",
            "--metrics-listen", f"127.0.0.1:{cluster.verifier_metrics_port}",
            *cluster.trace_flags(state, "verifier")]  # fmt: skip
    for ca in cas:
        args += ["--manufacturer-ca", str(ca)]
    sup.start("verifier", args)
    return [_verify(cluster, node) for node in range(cluster.nodes)]


def _verify(cluster: Cluster, node: int) -> str:
    host = f"node-{node}"
    with (
        grpc.insecure_channel(f"127.0.0.1:{cluster.agent_port + node}") as a,
        grpc.insecure_channel(
            f"127.0.0.1:{cluster.verifier_port}",
            options=[("grpc.max_send_message_length", 80 << 20)],
        ) as v,
    ):
        agent, verifier = agent_pb2_grpc.HostAgentStub(a), verifier_pb2_grpc.VerifierStub(v)
        ident = agent.GetIdentity(agent_pb2.GetIdentityRequest(), timeout=30)
        begin = verifier.BeginEnrollment(verifier_pb2.BeginEnrollmentRequest(
            host=host, ek_certificate=ident.ek_certificate, ek_public=ident.ek_public, ak_public=ident.ak_public), timeout=30)  # fmt: skip
        secret = agent.ActivateCredential(agent_pb2.ActivateCredentialRequest(
            credential_blob=begin.credential_blob, encrypted_secret=begin.encrypted_secret), timeout=30).secret  # fmt: skip
        verifier.CompleteEnrollment(
            verifier_pb2.CompleteEnrollmentRequest(host=host, activated_secret=secret), timeout=30
        )
        nonce = verifier.GetNonce(verifier_pb2.GetNonceRequest(host=host), timeout=30).nonce
        evidence = agent.GetEvidence(
            agent_pb2.GetEvidenceRequest(nonce=nonce, pcr_selection=SELECTION), timeout=30
        )
        signed = verifier.Verify(
            verifier_pb2.VerifyRequest(nonce=nonce, evidence=evidence, runtime_policy="s3ml"),
            timeout=30,
        )
    verdict = evidence_pb2.Verdict.FromString(signed.verdict)
    if verdict.trusted:
        return f"  {host}: TPM/IMA integrity verified ({verdict.ima_entries} IMA entries, EK-bound AK, signed verdict)"
    finding = verdict.findings[0]
    return f"  {host}: NOT trusted: {finding.reason}: {finding.message}"
