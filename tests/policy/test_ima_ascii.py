"""The ASCII measurement list through Keylime's parser equals the binary list through ours."""

from __future__ import annotations

import hashlib

import pytest

from services.policy.ima import log, replay
from services.policy.ima.ascii import parse_ascii


def _binary() -> bytes:
    raw = b""
    for i in range(8):
        digest = hashlib.sha256(f"file {i}".encode()).digest()
        template = "ima-sig" if i % 2 else "ima-ng"
        sig = (
            bytes([3, 2, 4]) + bytes(4) + (4).to_bytes(2, "big") + b"sigs"
            if template == "ima-sig"
            else b""
        )
        raw += log.encode_entry(10, template, f"/usr/bin/tool{i}", "sha256", digest, sig)
    return raw


def _ascii(raw: bytes) -> str:
    return "".join(log.ascii_line(e) + "\n" for e in log.parse(raw))


def test_ascii_and_binary_agree() -> None:
    raw = _binary()
    binary = log.parse(raw)
    ascii_entries = parse_ascii(_ascii(raw))
    assert [(e.path, e.template_data, e.template_digest) for e in ascii_entries] == [
        (e.path, e.template_data, e.template_digest) for e in binary
    ]
    initial = replay.ReplayState.initial(["sha1", "sha256"])
    assert replay.extend(initial, ascii_entries) == replay.extend(initial, binary)


def test_ascii_edited_entry_refused() -> None:
    text = _ascii(_binary()).replace("tool3", "tool9", 1)
    with pytest.raises(log.ImaLogError, match="template digest does not match"):
        parse_ascii(text)


def test_ascii_garbage_refused() -> None:
    with pytest.raises(log.ImaLogError, match="entry 0"):
        parse_ascii("10 zz ima-ng nonsense\n")
