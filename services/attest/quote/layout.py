"""Byte layout of an Intel SGX DCAP ECDSA-P256 quote, version 3.

Follows Intel's "SGX ECDSA Quote Library API" (Appendix A, Quote Format): a
48-byte header, the 384-byte enclave report body, then the signature data with
the attestation key, the Quoting Enclave (QE) report and its signature, the QE
authentication data and the certification data (type 5: PCK chain in PEM).
Parsing is strict: every length is checked, trailing bytes are refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from services.attest.quote.errors import QuoteFormatError

QUOTE_VERSION = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
CERT_DATA_PCK_CHAIN = 5
HEADER_SIZE = 48
REPORT_BODY_SIZE = 384
SIGNED_SIZE = HEADER_SIZE + REPORT_BODY_SIZE
ECDSA_SIG_SIZE = 64
ECDSA_KEY_SIZE = 64
MAX_QUOTE_SIZE = 64 * 1024
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

# SGX ATTRIBUTES.FLAGS bits (Intel SDM Vol. 3D, 38.7.1).
ATTR_INIT = 0x1
ATTR_DEBUG = 0x2
ATTR_MODE64BIT = 0x4

_HEADER = struct.Struct("<HHIHH16s20s")
_REPORT = struct.Struct("<16sI28s16s32s32s32s96sHH60s64s")


@dataclass(frozen=True)
class Header:
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def pack(self) -> bytes:
        return _HEADER.pack(
            self.version,
            self.att_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            self.qe_vendor_id,
            self.user_data,
        )


@dataclass(frozen=True)
class ReportBody:
    """An SGX REPORT body: what the CPU measured about one enclave."""

    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes

    @property
    def flags(self) -> int:
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def debug(self) -> bool:
        return bool(self.flags & ATTR_DEBUG)

    def pack(self) -> bytes:
        return _REPORT.pack(
            self.cpu_svn,
            self.misc_select,
            bytes(28),
            self.attributes,
            self.mr_enclave,
            bytes(32),
            self.mr_signer,
            bytes(96),
            self.isv_prod_id,
            self.isv_svn,
            bytes(60),
            self.report_data,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> ReportBody:
        if len(raw) != REPORT_BODY_SIZE:
            raise QuoteFormatError(f"report body is {len(raw)} bytes, expected 384")
        f = _REPORT.unpack(raw)
        return cls(
            cpu_svn=f[0],
            misc_select=f[1],
            attributes=f[3],
            mr_enclave=f[4],
            mr_signer=f[6],
            isv_prod_id=f[8],
            isv_svn=f[9],
            report_data=f[11],
        )


@dataclass(frozen=True)
class Quote:
    """A parsed quote; `signed_bytes` is what the attestation key signed."""

    header: Header
    report: ReportBody
    signature: bytes
    attestation_key: bytes
    qe_report: ReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_data_type: int
    cert_data: bytes

    @property
    def signed_bytes(self) -> bytes:
        return self.header.pack() + self.report.pack()

    def pack(self) -> bytes:
        sig_data = b"".join(
            [
                self.signature,
                self.attestation_key,
                self.qe_report.pack(),
                self.qe_report_signature,
                struct.pack("<H", len(self.qe_auth_data)),
                self.qe_auth_data,
                struct.pack("<HI", self.cert_data_type, len(self.cert_data)),
                self.cert_data,
            ]
        )
        return self.signed_bytes + struct.pack("<I", len(sig_data)) + sig_data


class _Reader:
    """Consumes a buffer front to back; any overrun is a format error."""

    def __init__(self, raw: bytes) -> None:
        self._raw = memoryview(raw)
        self._pos = 0

    def take(self, size: int, what: str) -> bytes:
        end = self._pos + size
        if end > len(self._raw):
            raise QuoteFormatError(
                f"quote truncated in {what}: needs {end} bytes, has {len(self._raw)}"
            )
        chunk = bytes(self._raw[self._pos : end])
        self._pos = end
        return chunk

    def u16(self, what: str) -> int:
        return int(struct.unpack("<H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    @property
    def remaining(self) -> int:
        return len(self._raw) - self._pos


def parse(raw: bytes) -> Quote:
    """Parses a DCAP v3 ECDSA quote, refusing anything malformed."""
    if len(raw) > MAX_QUOTE_SIZE:
        raise QuoteFormatError(f"quote is {len(raw)} bytes, more than {MAX_QUOTE_SIZE}")
    reader = _Reader(raw)
    header = Header(*_HEADER.unpack(reader.take(HEADER_SIZE, "header")))
    if header.version != QUOTE_VERSION:
        raise QuoteFormatError(f"quote version {header.version}, only version 3 is supported")
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(f"attestation key type {header.att_key_type}, expected 2 (P-256)")
    report = ReportBody.unpack(reader.take(REPORT_BODY_SIZE, "report body"))
    sig_len = reader.u32("signature data length")
    if sig_len != reader.remaining:
        raise QuoteFormatError(
            f"signature data length {sig_len} does not match the {reader.remaining} bytes left"
        )
    quote = Quote(
        header=header,
        report=report,
        signature=reader.take(ECDSA_SIG_SIZE, "quote signature"),
        attestation_key=reader.take(ECDSA_KEY_SIZE, "attestation key"),
        qe_report=ReportBody.unpack(reader.take(REPORT_BODY_SIZE, "QE report")),
        qe_report_signature=reader.take(ECDSA_SIG_SIZE, "QE report signature"),
        qe_auth_data=reader.take(reader.u16("QE auth data size"), "QE auth data"),
        cert_data_type=reader.u16("certification data type"),
        cert_data=reader.take(reader.u32("certification data size"), "certification data"),
    )
    if reader.remaining:
        raise QuoteFormatError(f"{reader.remaining} unexpected bytes after the quote")
    return quote
