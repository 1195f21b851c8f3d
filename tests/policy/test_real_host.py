"""A real host's IMA log and TPM 2.0 quote (testdata/real_host/README.md gives the origin).

The quote must verify (RSA AK, nonce, PCR digest over PCRs 0-16), and the
780-entry ASCII log — parsed through Keylime's IMA AST into our entries —
must replay to the quoted PCR 10 in the sha256 bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.policy.ima import replay
from services.policy.ima.ascii import parse_ascii
from services.policy.tpm import verify

DATA = Path(__file__).with_name("testdata") / "real_host"


def _pcrs() -> dict[tuple[str, int], bytes]:
    raw = json.loads((DATA / "pcrs_sha256.json").read_text())
    return {("sha256", int(i)): bytes.fromhex(v) for i, v in raw["pcrs"].items()}


def _quote() -> tuple[bytes, bytes, bytes, bytes]:
    return tuple(
        (DATA / name).read_bytes()
        for name in ("ak_pub.tpm2b", "quote_attest.bin", "quote_sig.bin", "nonce.bin")
    )  # type: ignore[return-value]


def test_real_quote_verifies() -> None:
    ak, attest, signature, nonce = _quote()
    info = verify.verify_quote(ak, attest, signature, nonce, _pcrs())
    assert info.reset_count == 43


def test_real_ima_log_replays_to_quoted_pcr10() -> None:
    entries = parse_ascii((DATA / "ima_ascii.txt").read_text())
    assert len(entries) == 780
    assert entries[0].path == "boot_aggregate"
    state = replay.extend(replay.ReplayState.initial(["sha256"]), entries)
    assert state.pcrs["sha256"] == _pcrs()[("sha256", 10)]


def test_real_log_with_entry_dropped_does_not_replay() -> None:
    entries = parse_ascii((DATA / "ima_ascii.txt").read_text())
    del entries[400]
    state = replay.extend(replay.ReplayState.initial(["sha256"]), entries)
    assert state.pcrs["sha256"] != _pcrs()[("sha256", 10)]


def test_real_quote_with_other_nonce_refused() -> None:
    ak, attest, signature, _ = _quote()
    with pytest.raises(verify.TpmCheckError, match=r"quote\.nonce"):
        verify.verify_quote(ak, attest, signature, b"fresh nonce", _pcrs())
