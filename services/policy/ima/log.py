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


@dataclass(frozen=True)
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


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0
        self.entry = 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.raw):
            raise ImaLogError(self.entry, f"truncated in {what}")
        chunk = self.raw[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])


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


def _entry(reader: _Reader) -> Entry:
    pcr = reader.u32("PCR index")
    digest = reader.take(SHA1_SIZE, "template digest")
    name_len = reader.u32("template name length")
    if not 0 < name_len <= 255:
        raise ImaLogError(reader.entry, f"template name length {name_len}")
    template = reader.take(name_len, "template name").decode("ascii", "replace")
    if template not in TEMPLATES:
        raise ImaLogError(
            reader.entry, f"unknown template {template!r} (supported: {', '.join(TEMPLATES)})"
        )
    if template == "ima":
        file_digest = reader.take(SHA1_SIZE, "file digest")
        size = reader.u32("path length")
        if size > 255:
            raise ImaLogError(reader.entry, f"legacy path length {size} over 255")
        path = _path(reader.take(size, "path"))
        data = file_digest + struct.pack("<I", size) + path.encode()
        return Entry(reader.entry, pcr, template, digest, data, "sha1", file_digest, path, b"")
    size = reader.u32("template data length")
    if size > MAX_NAME + 8192:
        raise ImaLogError(reader.entry, f"template data length {size} is implausible")
    data = reader.take(size, "template data")
    fields = _fields(data, reader.entry)
    expected = 3 if template == "ima-sig" else 2
    if len(fields) != expected:
        raise ImaLogError(reader.entry, f"{template} has {len(fields)} fields, expected {expected}")
    algo, file_digest = _digest_ng(fields[0], reader.entry)
    signature = fields[2] if template == "ima-sig" else b""
    return Entry(
        reader.entry, pcr, template, digest, data, algo, file_digest, _path(fields[1]), signature
    )


def parse(raw: bytes, first_index: int = 0, check_digests: bool = True) -> list[Entry]:
    """All entries of a binary log; `first_index` numbers them (incremental reads).

    With `check_digests`, each entry's stored SHA-1 template digest must match its
    data (an edited entry is caught here, before any PCR comparison).
    """
    if len(raw) > MAX_LOG_BYTES:
        raise ImaLogError(first_index, f"log of {len(raw)} bytes exceeds {MAX_LOG_BYTES}")
    reader = _Reader(raw)
    entries = []
    reader.entry = first_index
    while reader.pos < len(raw):
        entry = _entry(reader)
        stored_ok = hashlib.sha1(entry.hashed_data).digest() == entry.template_digest  # noqa: S324
        if check_digests and not entry.violation and not stored_ok:
            raise ImaLogError(
                entry.index, f"template digest does not match the data of {entry.path!r}"
            )
        entries.append(entry)
        reader.entry += 1
    return entries


def tail(raw: bytes, first: int) -> bytes:
    """The log from entry `first` on (what an incremental verification needs)."""
    reader = _Reader(raw)
    for _ in range(first):
        if reader.pos >= len(raw):
            raise ImaLogError(reader.entry, f"the log has fewer than {first} entries")
        _entry(reader)
        reader.entry += 1
    return raw[reader.pos :]


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
