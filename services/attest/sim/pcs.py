"""The simulated PCS: collateral (CRLs, TCB info, QE identity) under the sim root.

Shapes follow Intel's PCS v4 API (TCB info v3, enclave identity v2) so the
verifier reads sim and real collateral with the same code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.attest.quote import ecdsa
from services.attest.quote.collateral import Collateral
from services.attest.sim.pki import SIM_CPU_SVN, SIM_FMSPC, SIM_PCE_SVN, SimPki

SIM_QE_MRSIGNER = bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff")
SIM_QE_PRODID = 1
SIM_QE_SVN = 8
# INIT | PROVISIONKEY, as Intel's QE identity states; MODE64BIT is masked out.
SIM_QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
_VALID = timedelta(days=30)


def _crl(
    pki: SimPki, issuer: str, revoked: set[int], now: datetime, valid: timedelta = _VALID
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.certs[issuer].subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + valid)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.keys[issuer].public_key()),
            critical=False,
        )
    )
    for serial in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(pki.keys[issuer], hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def _pcs_time(when: datetime) -> str:
    """PCS timestamps: UTC, whole seconds, 'Z' suffix."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(pki: SimPki, body: dict[str, object]) -> tuple[str, bytes]:
    text = json.dumps(body, separators=(",", ":"))
    return text, ecdsa.sign_raw(pki.keys["tcb"], text.encode())


def collateral(
    pki: SimPki,
    now: datetime,
    revoked_serials: frozenset[int] = frozenset(),
    valid: timedelta = _VALID,
) -> Collateral:
    """Fresh collateral; `revoked_serials` go on the PCK CRL and the root CRL."""
    dates = {"issueDate": _pcs_time(now), "nextUpdate": _pcs_time(now + valid)}
    tcb_info, tcb_sig = _signed(
        pki,
        {
            "id": "SGX",
            "version": 3,
            **dates,
            "fmspc": SIM_FMSPC.hex().upper(),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tcbLevels": [
                {
                    "tcb": {
                        "sgxtcbcomponents": [{"svn": s} for s in SIM_CPU_SVN],
                        "pcesvn": SIM_PCE_SVN,
                    },
                    "tcbDate": "2026-01-01T00:00:00Z",
                    "tcbStatus": "UpToDate",
                },
                {
                    "tcb": {"sgxtcbcomponents": [{"svn": 2}] * 16, "pcesvn": 10},
                    "tcbDate": "2024-01-01T00:00:00Z",
                    "tcbStatus": "SWHardeningNeeded",
                },
                {
                    "tcb": {"sgxtcbcomponents": [{"svn": 0}] * 16, "pcesvn": 0},
                    "tcbDate": "2020-01-01T00:00:00Z",
                    "tcbStatus": "OutOfDate",
                },
            ],
        },
    )
    qe_identity, qe_sig = _signed(
        pki,
        {
            "id": "QE",
            "version": 2,
            **dates,
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": SIM_QE_ATTRIBUTES.hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": SIM_QE_MRSIGNER.hex().upper(),
            "isvprodid": SIM_QE_PRODID,
            "tcbLevels": [
                {
                    "tcb": {"isvsvn": SIM_QE_SVN},
                    "tcbDate": "2026-01-01T00:00:00Z",
                    "tcbStatus": "UpToDate",
                },
                {
                    "tcb": {"isvsvn": 0},
                    "tcbDate": "2020-01-01T00:00:00Z",
                    "tcbStatus": "OutOfDate",
                },
            ],
        },
    )
    issuer_chain = pki.pem("tcb", "root").decode()
    revoked = set(revoked_serials)
    return Collateral(
        pck_crl_issuer_chain=pki.pem("platform", "root").decode(),
        root_ca_crl=_crl(pki, "root", revoked, now, valid),
        pck_crl=_crl(pki, "platform", revoked, now, valid),
        tcb_info_issuer_chain=issuer_chain,
        tcb_info=tcb_info,
        tcb_info_signature=tcb_sig,
        qe_identity_issuer_chain=issuer_chain,
        qe_identity=qe_identity,
        qe_identity_signature=qe_sig,
    )
