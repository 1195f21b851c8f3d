"""Mutually attested gRPC: credentials from ACS-issued identities, peer checks.

Both ends present certificates the ACS issued after attestation and trust
only the ACS CA; a peer without one fails the TLS handshake. Revocation is
checked per call against the trust bundle's CRL, as gRPC's Python TLS stack
does not read CRLs itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import grpc
from cryptography import x509

from services.attest.ca import role_uri
from services.rpc.intercept import Behavior, UnaryInterceptor


def server_credentials(
    chain_pem: bytes, key_pem: bytes, ca_pem: bytes, require_client_auth: bool = True
) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(key_pem, chain_pem)], root_certificates=ca_pem, require_client_auth=require_client_auth
    )


def channel_credentials(
    ca_pem: bytes, chain_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=chain_pem
    )


_PARSED: dict[bytes, x509.Certificate] = {}
_PARSED_LIMIT = 4096


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    """The verified client certificate of this call (parsed once per distinct peer)."""
    # gRPC gives a list of PEM certificates (typeshed's stub disagrees).
    pems: list[bytes] = cast(Any, context.auth_context()).get("x509_pem_cert") or []
    if not pems:
        return None
    cert = _PARSED.get(pems[0])
    if cert is None:
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        cert = _PARSED[pems[0]] = x509.load_pem_x509_certificate(pems[0])
    return cert


class RevocationList:
    """Serials revoked by the ACS CA; refreshed from the trust bundle's CRL."""

    def __init__(self) -> None:
        self._serials: frozenset[int] = frozenset()
        self._lock = threading.Lock()

    def update(self, crl_pem: bytes, ca_cert: x509.Certificate) -> None:
        crl = x509.load_pem_x509_crl(crl_pem)
        if not crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
            raise ValueError("CRL is not signed by the ACS CA")
        with self._lock:
            self._serials = frozenset(entry.serial_number for entry in crl)

    def revoked(self, cert: x509.Certificate) -> bool:
        return cert.serial_number in self._serials

    def serials(self) -> frozenset[int]:
        return self._serials


Predicate = Callable[[x509.Certificate], bool]


class PeerPolicyInterceptor(UnaryInterceptor):
    """Refuses calls whose peer certificate is missing, revoked or of the wrong role.

    `allowed(cert)` decides the role (e.g. admin only); the status codes follow
    gRPC's meaning: no credential → UNAUTHENTICATED, wrong role → PERMISSION_DENIED.
    """

    def __init__(self, allowed: Predicate, revocations: RevocationList, what: str) -> None:
        super().__init__()
        self._allowed = allowed
        self._revocations = revocations
        self._what = what

    def around(self, method: str, inner: Behavior) -> Behavior:
        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            cert = peer_certificate(context)
            if cert is None:
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, f"{self._what}: no client certificate"
                )
            elif self._revocations.revoked(cert):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{self._what}: certificate revoked")
            elif not self._allowed(cert):
                role = role_uri(cert) or "no s3ml role"
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED, f"{self._what}: {role} may not call this"
                )
            return inner(request, context)

        return checked


def has_role(prefix: str | tuple[str, ...]) -> Predicate:
    """Certificates whose s3ml role URI starts with `prefix` (or any of several)."""
    return lambda cert: role_uri(cert).startswith(prefix)
