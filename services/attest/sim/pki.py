"""The simulated SGX PKI: root CA, PCK chain, TCB signer and the QE attestation key.

Created once (`s3mlctl sim init`) into a state directory with 0600 key files.
Every name says SIMULATED, and the root is a fresh key, so a verifier pinned to
the Intel SGX Root CA can never accept anything signed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.attest.quote import pck_extension
from services.attest.quote.pck_extension import SGX_EXTENSION_OID

_NAMES = {
    "root": "s3ml SIMULATED SGX Root CA",
    "platform": "s3ml SIMULATED SGX PCK Platform CA",
    "pck": "s3ml SIMULATED SGX PCK Certificate",
    "tcb": "s3ml SIMULATED SGX TCB Signing",
}
_VALIDITY = timedelta(days=3650)

# The simulated platform's TCB, as its PCK certificate states it.
SIM_CPU_SVN = bytes([7] * 16)
SIM_PCE_SVN = 13
SIM_FMSPC = bytes.fromhex("00906ed50000")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3ml simulation (not Intel)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
    now: datetime,
    sgx_extension: bytes | None = None,
) -> x509.Certificate:
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(not ca, False, False, False, False, ca, ca, False, False), critical=True
        )
    )
    if sgx_extension is not None:
        oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, sgx_extension), False)
    return builder.sign(signing_key, hashes.SHA256())


def write_private(path: Path, data: bytes) -> None:
    """Writes key material readable by the owner only (0600), atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class SimPki:
    """Keys and certificates of the simulated platform, loaded from the state dir."""

    certs: dict[str, x509.Certificate]
    keys: dict[str, ec.EllipticCurvePrivateKey]

    @classmethod
    def create(cls, state_dir: Path, now: datetime | None = None) -> SimPki:
        """Creates a new hierarchy; refuses to overwrite an existing one."""
        now = now or datetime.now(UTC)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (state_dir / "root.pem").exists():
            raise FileExistsError(f"{state_dir} already holds a simulated PKI")
        keys = {role: ec.generate_private_key(ec.SECP256R1()) for role in [*_NAMES, "ak"]}
        certs: dict[str, x509.Certificate] = {}
        certs["root"] = _issue(_NAMES["root"], keys["root"], None, True, now)
        root = (certs["root"], keys["root"])
        certs["platform"] = _issue(_NAMES["platform"], keys["platform"], root, True, now)
        platform = (certs["platform"], keys["platform"])
        sgx = pck_extension.encode(
            pck_extension.PlatformTcb(tuple(SIM_CPU_SVN), SIM_PCE_SVN, SIM_FMSPC), SIM_CPU_SVN
        )
        certs["pck"] = _issue(_NAMES["pck"], keys["pck"], platform, False, now, sgx)
        certs["tcb"] = _issue(_NAMES["tcb"], keys["tcb"], root, False, now)
        for role, key in keys.items():
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(state_dir / f"{role}.key", pem)
        for role, cert in certs.items():
            write_private(state_dir / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM))
        return cls(certs, keys)

    @classmethod
    def load(cls, state_dir: Path) -> SimPki:
        certs = {
            role: x509.load_pem_x509_certificate((state_dir / f"{role}.pem").read_bytes())
            for role in _NAMES
        }
        keys = {}
        for role in [*_NAMES, "ak"]:
            key = serialization.load_pem_private_key(
                (state_dir / f"{role}.key").read_bytes(), password=None
            )
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TypeError(f"{role}.key is not an EC private key")
            keys[role] = key
        return cls(certs, keys)

    def pem(self, *roles: str) -> bytes:
        return b"".join(self.certs[r].public_bytes(serialization.Encoding.PEM) for r in roles)

    @property
    def root_pem(self) -> bytes:
        return self.pem("root")
