"""The kernel's binary IMA measurement list (binary_runtime_measurements).

Entry layout (host byte order, little-endian here): PCR index (u32); template
digest (SHA-1, 20 bytes); template name length (u32) and name; then, except
for the legacy `ima` template, the template data length (u32) and data. For
`ima-ng`/`ima-sig` the data is a sequence of (u32 length, bytes) fields:
`d-ng` ("<algo>:\\0" + file digest), `n-ng` (path, NUL-terminated) and, for
`ima-sig`, `sig`. The legacy `ima` template's data is the SHA-1 file digest
followed by (u32 length, path).

Parsing is strict and bounded: a truncated entry, an unknown template or an
oversized log is refused with the entry index, never skipped.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

SHA1_SIZE = 20
MAX_LOG_BYTES = 64 * 1024 * 1024
MAX_NAME = 4096
TEMPLATES = ("ima", "ima-ng", "ima-sig")
_ALGO_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "md5": 16}


class ImaLogError(Exception):
    """The log is malformed; `entry` is the index of the offending entry."""

    def __init__(self, entry: int, message: str) -> None:
        super().__init__(f"IMA log entry {entry}: {message}")
        self.entry = entry


@dataclass(frozen=True, slots=True)
class Entry:
    """One measurement: which file, its digest, and the digest extended into the PCR."""

    index: int
    pcr: int
    template: str
    template_digest: bytes  # SHA-1 of the template data, as the log stores it
    template_data: bytes
    file_algo: str
    file_digest: bytes
    path: str
    signature: bytes

    @property
    def violation(self) -> bool:
        """A measurement violation is logged as an all-zero digest (extended as 0xFF...)."""
        return self.template_digest == bytes(SHA1_SIZE)

    def digest_for_bank(self, bank: str) -> bytes:
        """What this entry extends into `bank` (kernel with per-bank template digests)."""
        size = hashlib.new(bank).digest_size
        if self.violation:
            return b"\xff" * size
        if bank == "sha1":
            return self.template_digest
        return hashlib.new(bank, self.hashed_data).digest()

    @property
    def hashed_data(self) -> bytes:
        """The bytes the template digest covers (the legacy template pads the path)."""
        if self.template != "ima":
            return self.template_data
        name = self.path.encode()
        return self.file_digest + name + bytes(256 - len(name))


def _fields(data: bytes, entry: int) -> list[bytes]:
    fields, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ImaLogError(entry, "truncated template field length")
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + size > len(data):
            raise ImaLogError(entry, "template field longer than the template data")
        fields.append(data[pos : pos + size])
        pos += size
    return fields


def _digest_ng(field: bytes, entry: int) -> tuple[str, bytes]:
    algo, sep, digest = field.partition(b":\0")
    name = algo.decode("ascii", "replace")
    if not sep or name not in _ALGO_SIZES or len(digest) != _ALGO_SIZES[name]:
        raise ImaLogError(entry, f"malformed d-ng field (algorithm {name!r})")
    return name, digest


def _path(field: bytes) -> str:
    return field.rstrip(b"\0").decode("utf-8", "surrogateescape")


_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<I20sI")  # PCR index, SHA-1 template digest, template name length


def _need(raw: bytes, end: int, index: int, what: str) -> None:
    if end > len(raw):
        raise ImaLogError(index, f"truncated in {what}")


def _entry(raw: bytes, pos: int, index: int) -> tuple[Entry, int]:
    """One entry at `pos`; returns it and the position after it (the hot path)."""
    _need(raw, pos + 28, index, "entry header")
    pcr, digest, name_len = _HEAD.unpack_from(raw, pos)
    pos += 28
    if not 0 < name_len <= 255:
        raise ImaLogError(index, f"template name length {name_len}")
    _need(raw, pos + name_len, index, "template name")
    template = raw[pos : pos + name_len].decode("ascii", "replace")
    pos += name_len
    if template not in TEMPLATES:
        raise ImaLogError(
            index, f"unknown template {template!r} (supported: {', '.join(TEMPLATES)})"
        )
    if template == "ima":
        _need(raw, pos + SHA1_SIZE + 4, index, "legacy entry")
        file_digest = raw[pos : pos + SHA1_SIZE]
        (size,) = _U32.unpack_from(raw, pos + SHA1_SIZE)
        if size > 255:
            raise ImaLogError(index, f"legacy path length {size} over 255")
        _need(raw, pos + SHA1_SIZE + 4 + size, index, "path")
        data = raw[pos : pos + SHA1_SIZE + 4 + size]
        path = _path(data[SHA1_SIZE + 4 :])
        return Entry(index, pcr, template, digest, data, "sha1", file_digest, path, b""), pos + len(
            data
        )
    _need(raw, pos + 4, index, "template data length")
    (size,) = _U32.unpack_from(raw, pos)
    pos += 4
    if size > MAX_NAME + 8192:
        raise ImaLogError(index, f"template data length {size} is implausible")
    _need(raw, pos + size, index, "template data")
    data = raw[pos : pos + size]
    fields = _fields(data, index)
    expected = 3 if template == "ima-sig" else 2
    if len(fields) != expected:
        raise ImaLogError(index, f"{template} has {len(fields)} fields, expected {expected}")
    algo, file_digest = _digest_ng(fields[0], index)
    signature = fields[2] if template == "ima-sig" else b""
    entry = Entry(
        index, pcr, template, digest, data, algo, file_digest, _path(fields[1]), signature
    )
    return entry, pos + size


def parse(raw: bytes, first_index: int = 0, check_digests: bool = True) -> list[Entry]:
    """All entries of a binary log; `first_index` numbers them (incremental reads).

    With `check_digests`, each entry's stored SHA-1 template digest must match its
    data (an edited entry is caught here, before any PCR comparison).
    """
    if len(raw) > MAX_LOG_BYTES:
        raise ImaLogError(first_index, f"log of {len(raw)} bytes exceeds {MAX_LOG_BYTES}")
    entries = []
    pos, index, sha1 = 0, first_index, hashlib.sha1
    while pos < len(raw):
        entry, pos = _entry(raw, pos, index)
        if (
            check_digests
            and not entry.violation
            and sha1(entry.hashed_data).digest() != entry.template_digest
        ):
            raise ImaLogError(index, f"template digest does not match the data of {entry.path!r}")
        entries.append(entry)
        index += 1
    return entries


def spans(raw: bytes) -> list[tuple[int, int]]:
    """Byte range of every entry (for tools that cut or splice logs)."""
    out, pos, index = [], 0, 0
    while pos < len(raw):
        _, end = _entry(raw, pos, index)
        out.append((pos, end))
        pos, index = end, index + 1
    return out


def ascii_line(entry: Entry) -> str:
    """The entry as the kernel renders it in ascii_runtime_measurements."""
    line = f"{entry.pcr} {entry.template_digest.hex()} {entry.template} "
    line += f"{entry.file_algo}:{entry.file_digest.hex()} {entry.path}"
    return line + (f" {entry.signature.hex()}" if entry.template == "ima-sig" else "")


def tail(raw: bytes, first: int) -> bytes:
    """The log from entry `first` on (what an incremental verification needs)."""
    pos = 0
    for index in range(first):
        if pos >= len(raw):
            raise ImaLogError(index, f"the log has fewer than {first} entries")
        _, pos = _entry(raw, pos, index)
    return raw[pos:]


# -- writing, for tests and for hosts that emulate IMA -------------------------------------------


def template_data(
    template: str, path: str, algo: str, file_digest: bytes, signature: bytes = b""
) -> bytes:
    if template == "ima":
        return file_digest + struct.pack("<I", len(path.encode())) + path.encode()
    fields = [algo.encode() + b":\0" + file_digest, path.encode() + b"\0"]
    if template == "ima-sig":
        fields.append(signature)
    return b"".join(struct.pack("<I", len(f)) + f for f in fields)


def encode_entry(
    pcr: int, template: str, path: str, algo: str, file_digest: bytes, signature: bytes = b""
) -> bytes:
    """One entry exactly as the kernel writes it."""
    data = template_data(template, path, algo, file_digest, signature)
    probe = Entry(0, pcr, template, b"", data, algo, file_digest, path, signature)
    digest = hashlib.sha1(probe.hashed_data).digest()  # noqa: S324 (IMA's format)
    head = struct.pack("<I", pcr) + digest + struct.pack("<I", len(template)) + template.encode()
    if template == "ima":
        return head + data
    return head + struct.pack("<I", len(data)) + data
