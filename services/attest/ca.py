"""The ACS certificate authority: shared service identities, instance and admin certs.

Roles travel as SPIFFE-style URI SANs so a peer's role is read from its
certificate alone: `spiffe://s3ml/service/<svc>` (shared identity),
`spiffe://s3ml/service/<svc>/instance/<name>` (one attested replica) and
`spiffe://s3ml/admin/<name>` (an operator of the ACS).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_PREFIX = "spiffe://s3ml/"
SERVICE_VALIDITY = timedelta(days=365)
INSTANCE_VALIDITY = timedelta(hours=24)
ADMIN_VALIDITY = timedelta(days=365)
CLIENT_VALIDITY = timedelta(days=90)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem_bytes: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem_bytes, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("expected an EC private key")
    return key


def role_uri(cert: x509.Certificate) -> str:
    """The certificate's s3ml role URI, or "" when it has none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    uris = list(san.get_values_for_type(x509.UniformResourceIdentifier))
    return next((u for u in uris if u.startswith(SPIFFE_PREFIX)), "")


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, now: datetime, label: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3ml"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"s3ml ACS CA ({label})"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        common_name: str,
        uri: str,
        dns_names: list[str],
        usages: list[x509.ObjectIdentifier],
        now: datetime,
        validity: timedelta,
    ) -> x509.Certificate:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
        names += [x509.DNSName(d) for d in dns_names]
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue_service(
        self,
        service: str,
        dns_names: list[str],
        public_key: ec.EllipticCurvePublicKey,
        now: datetime,
    ) -> x509.Certificate:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        uri = f"{SPIFFE_PREFIX}service/{service}"
        return self._issue(public_key, service, uri, dns_names, usages, now, SERVICE_VALIDITY)

    def issue_instance(
        self, service: str, instance: str, public_key: ec.EllipticCurvePublicKey, now: datetime
    ) -> x509.Certificate:
        uri = f"{SPIFFE_PREFIX}service/{service}/instance/{instance}"
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue(public_key, instance, uri, [], usages, now, INSTANCE_VALIDITY)

    def issue_client(
        self, name: str, public_key: ec.EllipticCurvePublicKey, now: datetime
    ) -> x509.Certificate:
        uri = f"{SPIFFE_PREFIX}client/{name}"
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue(public_key, name, uri, [], usages, now, CLIENT_VALIDITY)

    def issue_admin(
        self, name: str, public_key: ec.EllipticCurvePublicKey, now: datetime
    ) -> x509.Certificate:
        uri = f"{SPIFFE_PREFIX}admin/{name}"
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue(public_key, name, uri, [], usages, now, ADMIN_VALIDITY)

    def crl(self, revoked: dict[int, datetime], now: datetime) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=7))
        )
        for serial, when in sorted(revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)


def utcnow() -> datetime:
    return datetime.now(UTC)
