"""TPM 2.0 evidence from a real software TPM (swtpm), checked by the verifier logic.

The swtpm gets an EK certificate from a test manufacturer CA (swtpm_setup); IMA
entries are extended into its PCR 10 as a kernel would, and the quoted PCR 10
must equal the replay of the log.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tpm2_pytss import TSS2_Exception

from services.policy.ima import log, replay
from services.policy.tpm import swtpm as swtpm_module
from services.policy.tpm import verify
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.swtpm import Swtpm

SELECTION = {"sha256": [0, 1, 2, 3, 4, 5, 6, 7, 10], "sha1": [10]}


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Swtpm, TpmAgent]]:
    swtpm = Swtpm(tmp_path_factory.mktemp("swtpm"))
    swtpm.start()
    agent = TpmAgent(swtpm.tcti)
    yield swtpm, agent
    agent.close()
    swtpm.stop()


def _ca_pems(swtpm: Swtpm) -> list[bytes]:
    return [p.read_bytes() for p in swtpm.manufacturer_ca]


def test_ek_chain_to_manufacturer_ca(tpm: tuple[Swtpm, TpmAgent]) -> None:
    swtpm, agent = tpm
    cert = verify.check_ek_chain(agent.ek_certificate, _ca_pems(swtpm))
    assert cert.public_key().public_numbers().n > 0  # type: ignore[union-attr]


def test_ek_chain_to_unknown_ca_refused(tpm: tuple[Swtpm, TpmAgent], tmp_path: Path) -> None:
    other = Swtpm(tmp_path / "other")
    other.manufacture()
    _, agent = tpm
    with pytest.raises(verify.TpmCheckError, match=r"ek\.chain"):
        verify.check_ek_chain(agent.ek_certificate, _ca_pems(other))


def test_credential_activation_binds_ak_to_ek(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    blob, secret, expected = verify.make_challenge(bytes(agent.ek_public.marshal()), agent.ak_name)
    verify.check_activation(expected, agent.activate_credential(blob, secret))


def test_ak_not_bound_to_ek_refused(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    # The verifier's challenge names another AK: this TPM's AK cannot open it.
    foreign = agent.ak_name[:4] + hashlib.sha256(b"another AK").digest()
    blob, secret, _ = verify.make_challenge(bytes(agent.ek_public.marshal()), foreign)
    with pytest.raises(TSS2_Exception, match="integrity"):
        agent.activate_credential(blob, secret)


def test_ima_log_replays_to_quoted_pcr10(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    before = agent.read_pcrs({"sha256": [10], "sha1": [10]})
    raw = b"".join(
        log.encode_entry(
            10, "ima-ng", f"/usr/bin/tool{i}", "sha256", hashlib.sha256(bytes([i])).digest()
        )
        for i in range(20)
    )
    entries = log.parse(raw)
    for entry in entries:  # what the kernel would do at each measurement
        agent.extend(
            10, {"sha256": entry.digest_for_bank("sha256"), "sha1": entry.digest_for_bank("sha1")}
        )
    nonce = os.urandom(20)
    quote = agent.quote(nonce, SELECTION)
    info = verify.verify_quote(
        bytes(agent.ak_public.marshal()), quote.attest, quote.signature, nonce, quote.pcrs
    )
    state = replay.ReplayState(0, {"sha256": before[("sha256", 10)], "sha1": before[("sha1", 10)]})
    replayed = replay.extend(state, entries)
    assert replayed.pcrs["sha256"] == quote.pcrs[("sha256", 10)]
    assert replayed.pcrs["sha1"] == quote.pcrs[("sha1", 10)]
    assert info.reset_count >= 0


def test_replayed_quote_refused(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    quote = agent.quote(b"old nonce", SELECTION)
    with pytest.raises(verify.TpmCheckError, match=r"quote\.nonce"):
        verify.verify_quote(
            bytes(agent.ak_public.marshal()),
            quote.attest,
            quote.signature,
            b"fresh nonce",
            quote.pcrs,
        )


def test_pcr_values_not_matching_digest_refused(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    quote = agent.quote(b"n", SELECTION)
    forged = dict(quote.pcrs)
    forged[("sha256", 10)] = bytes(32)
    with pytest.raises(verify.TpmCheckError, match=r"quote\.pcr_digest"):
        verify.verify_quote(
            bytes(agent.ak_public.marshal()), quote.attest, quote.signature, b"n", forged
        )


def test_signature_from_other_key_refused(tpm: tuple[Swtpm, TpmAgent]) -> None:
    _, agent = tpm
    quote = agent.quote(b"n", SELECTION)
    tampered = quote.attest[:-1] + bytes([quote.attest[-1] ^ 1])
    with pytest.raises(verify.TpmCheckError, match=r"quote\.signature"):
        verify.verify_quote(
            bytes(agent.ak_public.marshal()), tampered, quote.signature, b"n", quote.pcrs
        )


def test_clock_going_back_refused() -> None:
    newer, older = verify.QuoteInfo(2000, 3, 0), verify.QuoteInfo(1000, 3, 0)
    verify.check_monotonic(older, newer)
    with pytest.raises(verify.TpmCheckError, match=r"quote\.clock"):
        verify.check_monotonic(newer, older)


def test_ak_still_usable_after_unorderly_restarts(tmp_path: Path) -> None:
    """A node's swtpm is killed by `make down` without TPM2_Shutdown; a TPM counts each
    such restart as a failed authorization, and without the reset at start the AK was
    locked out after a few (`make up` then failed in ActivateCredential)."""
    swtpm = Swtpm(tmp_path / "swtpm")
    for _ in range(6):
        swtpm.start()
        assert swtpm.process is not None
        try:
            agent = TpmAgent(swtpm.tcti)
            ek, ak = bytes(agent.ek_public.marshal()), agent.ak_name
            blob, secret, expected = verify.make_challenge(ek, ak)
            verify.check_activation(expected, agent.activate_credential(blob, secret))
            agent.close()
        finally:
            swtpm.process.kill()
            swtpm.process.wait()


def test_swtpm_ports_stay_clear_of_configured_ones(tmp_path: Path) -> None:
    """A swtpm once took the verifier's configured port (27500 in the cluster test) and
    the verifier then failed to bind: its ports come from the kernel's ephemeral range,
    which configured services stay below."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    picks = [swtpm_module._free_port_pair() for _ in range(100)]
    assert all(low <= port <= high for port in picks), sorted(picks)[:3] + sorted(picks)[-3:]
    swtpms = [Swtpm(tmp_path / f"swtpm{i}") for i in range(2)]
    try:
        for swtpm in swtpms:
            swtpm.start()
            assert low <= swtpm.port <= high
            TpmAgent(swtpm.tcti).close()  # both ports are the swtpm's: a session works
    finally:
        for swtpm in swtpms:
            swtpm.stop()
