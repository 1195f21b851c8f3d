"""Thin gRPC servicers of the verifier and the host agent."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from tpm2_pytss import TSS2_Exception

from s3ml.common.v1 import platform_pb2
from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, evidence_pb2, verifier_pb2, verifier_pb2_grpc
from services.policy.ima import log
from services.policy.ima.log import MAX_LOG_BYTES
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.verify import TpmCheckError
from services.policy.verifier import Verifier, VerifierError
from services.rpc.status import CodeTable


class LogTooLargeError(Exception):
    pass


CODES: CodeTable = [
    (TpmCheckError, grpc.StatusCode.UNAUTHENTICATED),
    (log.ImaLogError, grpc.StatusCode.INVALID_ARGUMENT),
    (LogTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (VerifierError, grpc.StatusCode.NOT_FOUND),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    # The TPM refused a command (e.g. dictionary-attack lockout); its reason names no secret.
    (TSS2_Exception, grpc.StatusCode.FAILED_PRECONDITION),
]


def _status(component: str) -> platform_pb2.ComponentStatus:
    return platform_pb2.ComponentStatus(component=component, version="0.1.0")


class VerifierServicer(verifier_pb2_grpc.VerifierServicer):
    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier
        self._started = time.time()

    def BeginEnrollment(
        self, request: verifier_pb2.BeginEnrollmentRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.BeginEnrollmentResponse:
        blob, secret = self._verifier.begin_enrollment(
            request.host, request.ek_certificate, request.ek_public, request.ak_public
        )
        return verifier_pb2.BeginEnrollmentResponse(credential_blob=blob, encrypted_secret=secret)

    def CompleteEnrollment(
        self, request: verifier_pb2.CompleteEnrollmentRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.CompleteEnrollmentResponse:
        digest = self._verifier.complete_enrollment(request.host, request.activated_secret)
        return verifier_pb2.CompleteEnrollmentResponse(ek_digest=digest)

    def GetNonce(
        self, request: verifier_pb2.GetNonceRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.GetNonceResponse:
        return verifier_pb2.GetNonceResponse(nonce=self._verifier.nonce(request.host))

    def Verify(
        self, request: verifier_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.SignedVerdict:
        if len(request.evidence.ima_log) > MAX_LOG_BYTES:
            raise LogTooLargeError(
                f"IMA log of {len(request.evidence.ima_log)} bytes exceeds {MAX_LOG_BYTES}; "
                "verify incrementally"
            )
        return self._verifier.verify(request.nonce, request.evidence, request.runtime_policy)

    def Status(
        self, request: platform_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> platform_pb2.ComponentStatus:
        status = _status("verifier")
        status.uptime_seconds = time.time() - self._started
        return status


class HostAgentServicer(agent_pb2_grpc.HostAgentServicer):
    """Serves one host's TPM evidence; the IMA log is read from the kernel's file."""

    def __init__(
        self, host: str, agent: TpmAgent, ima_log: Path, boot_log: Path | None = None
    ) -> None:
        self._host = host
        self._agent = agent
        self._ima_log = ima_log
        self._ima_ascii = ima_log.with_name("ascii_runtime_measurements")
        self._boot_log = boot_log
        self._started = time.time()

    def GetIdentity(
        self, request: agent_pb2.GetIdentityRequest, context: grpc.ServicerContext
    ) -> agent_pb2.GetIdentityResponse:
        return agent_pb2.GetIdentityResponse(
            host=self._host,
            ek_certificate=self._agent.ek_certificate,
            ek_public=bytes(self._agent.ek_public.marshal()),
            ak_public=bytes(self._agent.ak_public.marshal()),
            ak_name=self._agent.ak_name,
        )

    def ActivateCredential(
        self, request: agent_pb2.ActivateCredentialRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ActivateCredentialResponse:
        return agent_pb2.ActivateCredentialResponse(
            secret=self._agent.activate_credential(
                request.credential_blob, request.encrypted_secret
            )
        )

    def GetEvidence(
        self, request: agent_pb2.GetEvidenceRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.HostEvidence:
        selection = {s.bank: list(s.pcrs) for s in request.pcr_selection}
        if not selection:
            raise ValueError("pcr_selection is empty")
        quote = self._agent.quote(request.nonce, selection)
        raw, ascii_log = b"", ""
        if request.ascii:
            lines = self._ima_ascii.read_text().splitlines() if self._ima_ascii.exists() else []
            ascii_log = "".join(line + "\n" for line in lines[request.ima_offset :])
        elif self._ima_log.exists():
            raw = log.tail(self._ima_log.read_bytes(), request.ima_offset)
        return evidence_pb2.HostEvidence(
            host=self._host,
            quote_attest=quote.attest,
            quote_signature=quote.signature,
            pcr_values=[
                evidence_pb2.PcrValue(bank=b, index=i, value=v)
                for (b, i), v in sorted(quote.pcrs.items())
            ],
            ima_log=raw,
            ima_log_ascii=ascii_log,
            ima_offset=request.ima_offset,
            boot_log=self._boot_log.read_bytes()
            if self._boot_log and self._boot_log.exists()
            else b"",
        )

    def Status(
        self, request: platform_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> platform_pb2.ComponentStatus:
        status = _status("host-agent")
        status.uptime_seconds = time.time() - self._started
        return status
