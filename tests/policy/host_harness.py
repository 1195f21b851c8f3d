"""A TPM host for tests: swtpm, the real agent and verifier servicers on loopback, enrollment.

Shared by the verifier's own tests and the ACS's high_integrity release tests, which
need the same real stack: a software TPM, an emulated IMA boot entry, servers with
the production error mapping, and the verifier's credential-activation enrollment.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

import grpc

from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, verifier_pb2, verifier_pb2_grpc
from services.policy.api.servicers import CODES
from services.policy.ima import log, replay
from services.policy.tpm.agent import TpmAgent
from services.rpc.status import ErrorMappingInterceptor

MAX_MESSAGE = 80 << 20  # room for a long IMA log in one evidence message


def serve(add: Callable[[grpc.Server], None]) -> tuple[grpc.Server, int]:
    """A started plaintext server on a free loopback port, with `add`'s servicer."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[ErrorMappingInterceptor(CODES)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )


def boot_entry(agent: TpmAgent) -> tuple[bytes, log.Entry]:
    """The boot_aggregate of the TPM's PCRs 0-9, as IMA's first entry (raw, parsed)."""
    boot = agent.read_pcrs({"sha256": list(range(10))})
    aggregate = replay.boot_aggregate([boot[("sha256", i)] for i in range(10)], "sha256")
    raw = log.encode_entry(10, "ima-ng", "boot_aggregate", "sha256", aggregate)
    return raw, log.parse(raw)[0]


def enroll(
    host: str, verifier: verifier_pb2_grpc.VerifierStub, agent: agent_pb2_grpc.HostAgentStub
) -> None:
    """The verifier enrolls the host's AK by credential activation against its EK."""
    identity = agent.GetIdentity(agent_pb2.GetIdentityRequest(), timeout=10)
    begin = verifier.BeginEnrollment(
        verifier_pb2.BeginEnrollmentRequest(
            host=host,
            ek_certificate=identity.ek_certificate,
            ek_public=identity.ek_public,
            ak_public=identity.ak_public,
        ),
        timeout=10,
    )
    secret = agent.ActivateCredential(
        agent_pb2.ActivateCredentialRequest(
            credential_blob=begin.credential_blob, encrypted_secret=begin.encrypted_secret
        ),
        timeout=10,
    ).secret
    verifier.CompleteEnrollment(
        verifier_pb2.CompleteEnrollmentRequest(host=host, activated_secret=secret), timeout=10
    )
