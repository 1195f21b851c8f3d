"""The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1).

It states the platform's TCB (16 component SVNs, PCESVN, CPUSVN) and its
FMSPC, which select the TCB level in the TCB info collateral. Parsed with a
minimal DER reader (the extension is a fixed SEQUENCE of (OID, value) pairs);
the sim PCK certificate carries the same extension, built by `encode`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from services.attest.quote.errors import QuoteChainError

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_TCB = SGX_EXTENSION_OID + ".2"
_FMSPC = SGX_EXTENSION_OID + ".4"
_PCEID = SGX_EXTENSION_OID + ".3"

_SEQUENCE, _OID, _OCTETS, _INTEGER = 0x30, 0x06, 0x04, 0x02


@dataclass(frozen=True)
class PlatformTcb:
    components: tuple[int, ...]
    pce_svn: int
    fmspc: bytes


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER TLV at `pos`: (tag, contents, next position)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER value")
    return tag, data[pos : pos + length], pos + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    items, pos = [], 0
    while pos < len(data):
        tag, value, pos = _read(data, pos)
        items.append((tag, value))
    return items


def _oid_text(raw: bytes) -> str:
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _pairs(data: bytes) -> dict[str, tuple[int, bytes]]:
    out = {}
    for tag, body in _children(data):
        if tag != _SEQUENCE:
            raise ValueError("expected SEQUENCE of (OID, value)")
        (oid_tag, oid), (value_tag, value) = _children(body)
        if oid_tag != _OID:
            raise ValueError("expected OID")
        out[_oid_text(oid)] = (value_tag, value)
    return out


def platform_tcb(cert: x509.Certificate) -> PlatformTcb:
    """Reads the SGX extension of a PCK certificate; QuoteChainError if absent or malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
        raw = ext.value.public_bytes()
        _, body, _ = _read(raw, 0)
        top = _pairs(body)
        tcb = _pairs(top[_TCB][1])
        components = tuple(int.from_bytes(tcb[f"{_TCB}.{i}"][1], "big") for i in range(1, 17))
        return PlatformTcb(components, int.from_bytes(tcb[f"{_TCB}.17"][1], "big"), top[_FMSPC][1])
    except (x509.ExtensionNotFound, KeyError, ValueError, IndexError) as err:
        raise QuoteChainError(f"PCK certificate has no valid SGX extension ({err})") from err


# -- encoding, for the simulated PCK certificate -------------------------------------------


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | 2]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + value


def _oid(text: str) -> bytes:
    nums = [int(p) for p in text.split(".")]
    out = bytearray([nums[0] * 40 + nums[1]])
    for num in nums[2:]:
        chunk = [num & 0x7F]
        while num := num >> 7:
            chunk.append(0x80 | (num & 0x7F))
        out += bytes(reversed(chunk))
    return _tlv(_OID, bytes(out))


def _int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "big")
    return _tlv(_INTEGER, raw)


def _pair(oid: str, value: bytes) -> bytes:
    return _tlv(_SEQUENCE, _oid(oid) + value)


def encode(tcb: PlatformTcb, cpu_svn: bytes, pce_id: bytes = bytes(2)) -> bytes:
    """DER of the SGX extension for `tcb` (PPID zero: the sim has no platform id)."""
    comps = [_pair(f"{_TCB}.{i}", _int(svn)) for i, svn in enumerate(tcb.components, 1)]
    comps.append(_pair(f"{_TCB}.17", _int(tcb.pce_svn)))
    comps.append(_pair(f"{_TCB}.18", _tlv(_OCTETS, cpu_svn)))
    return _tlv(
        _SEQUENCE,
        _pair(SGX_EXTENSION_OID + ".1", _tlv(_OCTETS, bytes(16)))
        + _pair(_TCB, _tlv(_SEQUENCE, b"".join(comps)))
        + _pair(_PCEID, _tlv(_OCTETS, pce_id))
        + _pair(_FMSPC, _tlv(_OCTETS, tcb.fmspc))
        + _pair(SGX_EXTENSION_OID + ".5", _tlv(0x0A, b"\x00")),
    )
