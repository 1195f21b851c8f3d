"""IMA measurement lists in the kernel's binary format: parse, replay, appraise, tamper."""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from services.policy.ima import log, replay
from services.policy.ima.appraisal import RuntimePolicy, appraise, key_id

ROOT = Path(__file__).absolute().parents[2]
FILES = sorted((ROOT / "services" / "policy" / "ima").glob("*.py"))
KEY = ec.generate_private_key(ec.SECP256R1())
PCRS_0_9 = [hashlib.sha256(bytes([i])).digest() for i in range(10)]


def _sign(digest: bytes) -> bytes:
    signature = KEY.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return struct.pack(">BBB4sH", 3, 2, 4, key_id(KEY.public_key()), len(signature)) + signature


def _build(signed: bool = True) -> tuple[bytes, list[tuple[str, str]]]:
    """A log of real files: boot_aggregate, then ima-sig / ima-ng entries, one legacy entry."""
    aggregate = replay.boot_aggregate(PCRS_0_9, "sha256")
    raw = log.encode_entry(10, "ima-ng", "boot_aggregate", "sha256", aggregate)
    expected = [("boot_aggregate", aggregate.hex())]
    for i, path in enumerate(FILES):
        digest = hashlib.sha256(path.read_bytes()).digest()
        name = f"/usr/lib/s3ml/{path.name}"
        if i % 2 == 0:
            raw += log.encode_entry(
                10, "ima-sig", name, "sha256", digest, _sign(digest) if signed else b""
            )
        else:
            raw += log.encode_entry(10, "ima-ng", name, "sha256", digest)
        expected.append((name, digest.hex()))
    legacy = hashlib.sha1(b"legacy file").digest()  # noqa: S324 (the legacy template's format)
    raw += log.encode_entry(10, "ima", "/bin/legacy", "sha1", legacy)
    expected.append(("/bin/legacy", legacy.hex()))
    return raw, expected


def _quoted(raw: bytes) -> dict[str, bytes]:
    """PCR 10 as a TPM would hold it after the kernel extended these entries."""
    pcrs = {"sha1": bytes(20), "sha256": bytes(32)}
    for entry in log.parse(raw):
        for bank, value in pcrs.items():
            pcrs[bank] = hashlib.new(bank, value + entry.digest_for_bank(bank)).digest()
    return pcrs


def test_parse_round_trip() -> None:
    raw, expected = _build()
    entries = log.parse(raw)
    assert [(e.path, e.file_digest.hex()) for e in entries] == expected
    assert {e.template for e in entries} == {"ima", "ima-ng", "ima-sig"}
    assert entries[1].signature
    assert entries[2].signature == b""


def test_replay_matches_both_banks_and_resumes() -> None:
    raw, _ = _build()
    entries = log.parse(raw)
    full = replay.extend(replay.ReplayState.initial(["sha1", "sha256"]), entries)
    assert full.pcrs == _quoted(raw)
    half = replay.extend(replay.ReplayState.initial(["sha1", "sha256"]), entries[:3])
    assert replay.extend(half, entries[3:]) == full


def _tamper(raw: bytes, how: str) -> bytes:
    b = log.spans(raw)
    if how == "removed":
        return raw[: b[2][0]] + raw[b[2][1] :]
    if how == "reordered":
        return raw[: b[1][0]] + raw[b[2][0] : b[2][1]] + raw[b[1][0] : b[1][1]] + raw[b[2][1] :]
    extra = log.encode_entry(10, "ima-ng", "/opt/extra", "sha256", bytes(32))
    return raw[: b[3][0]] + extra + raw[b[3][0] :]


@pytest.mark.parametrize("how", ["removed", "reordered", "added"])
def test_tampered_log_does_not_replay_to_the_quoted_pcr(how: str) -> None:
    raw, _ = _build()
    quoted = _quoted(raw)
    replayed = replay.extend(replay.ReplayState.initial(["sha256"]), log.parse(_tamper(raw, how)))
    assert replayed.pcrs["sha256"] != quoted["sha256"]


def test_edited_entry_refused_at_parse() -> None:
    raw, _ = _build()
    edited = raw.replace(b"/usr/lib/s3ml/log.py", b"/usr/lib/s3ml/LOG.py", 1)
    with pytest.raises(log.ImaLogError, match=r"entry \d+: template digest does not match"):
        log.parse(edited)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:-7], "truncated"),
        (lambda raw: raw.replace(b"ima-ng", b"ima-xx", 1), "unknown template 'ima-xx'"),
        (lambda raw: raw + bytes(log.MAX_LOG_BYTES), "exceeds"),
    ],
    ids=["truncated", "unknown-template", "oversized"],
)
def test_malformed_logs(mutate: object, message: str) -> None:
    raw, _ = _build()
    with pytest.raises(log.ImaLogError, match=re.escape(message)):
        log.parse(mutate(raw))  # type: ignore[operator]


def _policy(raw: bytes, keys: bool = True, allow_all: bool = False) -> RuntimePolicy:
    entries = log.parse(raw)
    allow = {
        e.path: frozenset({e.file_digest.hex()})
        for e in entries
        if allow_all or e.template != "ima-sig"
    }
    return RuntimePolicy(
        allowlist=allow,
        keys={key_id(KEY.public_key()): KEY.public_key()} if keys else {},
        expected_boot_aggregate=frozenset({replay.boot_aggregate(PCRS_0_9, "sha256").hex()}),
    )


def test_good_host_passes() -> None:
    raw, _ = _build()
    assert appraise(log.parse(raw), _policy(raw)) is None


def test_file_not_in_allowlist_named() -> None:
    base, _ = _build()
    evil = log.encode_entry(10, "ima-ng", "/usr/bin/evil", "sha256", hashlib.sha256(b"x").digest())
    finding = appraise(log.parse(base + evil), _policy(base, keys=False, allow_all=True))
    assert finding is not None
    assert (finding.reason, finding.path) == ("ima.not_allowlisted", "/usr/bin/evil")


def test_missing_and_bad_signatures() -> None:
    unsigned, _ = _build(signed=False)
    finding = appraise(log.parse(unsigned), _policy(unsigned))
    assert finding is not None
    assert (finding.reason, finding.message) == (
        "ima.signature",
        "missing IMA signature",
    )
    raw, _ = _build()
    entries = log.parse(raw)
    other = ec.generate_private_key(ec.SECP256R1())
    policy = RuntimePolicy(
        allowlist=_policy(raw).allowlist, keys={key_id(KEY.public_key()): other.public_key()}
    )
    finding = appraise(entries, policy)
    assert finding is not None
    assert finding.message == "bad IMA signature"
    assert finding.entry == 1


def test_excludes_and_boot_aggregate() -> None:
    raw, _ = _build()
    extra = log.encode_entry(10, "ima-ng", "/var/log/app.log", "sha256", bytes(32))
    policy = _policy(raw)
    excluded = RuntimePolicy(
        policy.allowlist, policy.keys, (re.compile(r"/var/log/.*"),), policy.expected_boot_aggregate
    )
    assert appraise(log.parse(raw + extra), excluded) is None
    wrong = RuntimePolicy(policy.allowlist, policy.keys, (), frozenset({"00" * 32}))
    finding = appraise(log.parse(raw), wrong)
    assert finding is not None
    assert finding.reason == "ima.boot_aggregate"
