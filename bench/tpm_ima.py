"""TPM/IMA verification latency: IMA logs of 1,000 and 20,000 entries, full and
incremental, and the quote round trip, against a real swtpm through the verifier.

Anchor: Perun reports 719 ms to read and verify a TPM quote.
Run: bazel run //bench:tpm_ima
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.policy.v1 import evidence_pb2
from services.policy import runtime_policy
from services.policy.ima import log, replay
from services.policy.tpm.agent import TpmAgent
from services.policy.tpm.swtpm import Swtpm
from services.policy.verifier import Verifier

SELECTION = {"sha256": [0, 1, 2, 3, 4, 5, 6, 7, 10], "sha1": [10]}


def _evidence(agent: TpmAgent, nonce: bytes, raw: bytes, offset: int) -> evidence_pb2.HostEvidence:
    quote = agent.quote(nonce, SELECTION)
    return evidence_pb2.HostEvidence(
        host="bench",
        quote_attest=quote.attest,
        quote_signature=quote.signature,
        pcr_values=[
            evidence_pb2.PcrValue(bank=b, index=i, value=v) for (b, i), v in quote.pcrs.items()
        ],
        ima_log=raw,
        ima_offset=offset,
    )


def _measure(agent: TpmAgent, count: int, start: int) -> tuple[bytes, dict[str, list[str]]]:
    """`count` real-format entries, extended into PCR 10 the way the kernel does (batched)."""
    raw = bytearray()
    allow: dict[str, list[str]] = {}
    for i in range(start, start + count):
        digest = hashlib.sha256(f"file {i}".encode()).digest()
        path = f"/usr/lib/pkg{i // 100}/file{i}.so"
        raw += log.encode_entry(10, "ima-ng", path, "sha256", digest)
        allow[path] = [digest.hex()]
    for entry in log.parse(bytes(raw)):  # what the kernel does at each measurement
        agent.extend(
            10, {"sha256": entry.digest_for_bank("sha256"), "sha1": entry.digest_for_bank("sha1")}
        )
    return bytes(raw), allow


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        swtpm = Swtpm(Path(tmp) / "swtpm")
        swtpm.start()
        agent = TpmAgent(swtpm.tcti)
        try:
            results = run(swtpm, agent)
        finally:
            agent.close()
            swtpm.stop()
    print("platform: swtpm (software TPM 2.0), 2 cores")
    for key, value in results.items():
        print(f"  {key:<22} {value:9.2f} {'s' if key.endswith('_s') else 'ms'}")
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in results.items()))


def run(swtpm: Swtpm, agent: TpmAgent) -> dict[str, float]:
    from services.policy.tpm import verify  # noqa: PLC0415

    started = time.perf_counter()
    raw_1k, allow = _measure(agent, 1000, 0)
    raw_19k, allow_more = _measure(agent, 19000, 1000)
    setup_s = time.perf_counter() - started
    allow.update(allow_more)
    allow.update(
        {
            f"/usr/lib/pkg200/file{i}.so": [hashlib.sha256(f"file {i}".encode()).hexdigest()]
            for i in range(20000, 20010)
        }
    )
    import json  # noqa: PLC0415

    policy = runtime_policy.load("bench", json.dumps({"allowlist": allow}).encode())
    cas = [p.read_bytes() for p in swtpm.manufacturer_ca]

    def enrolled() -> Verifier:
        v = Verifier(cas, {"bench": policy}, ec.generate_private_key(ec.SECP256R1()))
        blob, secret = v.begin_enrollment(
            "bench",
            agent.ek_certificate,
            bytes(agent.ek_public.marshal()),
            bytes(agent.ak_public.marshal()),
        )
        v.complete_enrollment("bench", agent.activate_credential(blob, secret))
        return v

    results: dict[str, float] = {}
    # Full verification of the first 1,000 entries needs PCR 10 as it was then: replay offline.
    v = enrolled()
    whole = raw_1k + raw_19k
    nonce = v.nonce("bench")
    evidence = _evidence(agent, nonce, whole, 0)
    t = time.perf_counter()
    verdict = v.verify(nonce, evidence, "bench")
    results["ima20k_full_ms"] = (time.perf_counter() - t) * 1000
    assert evidence_pb2.Verdict.FromString(verdict.verdict).trusted
    # 1k: the parse + replay + appraisal cost for 1,000 entries (quote check included).
    parsed = log.parse(raw_1k)
    t = time.perf_counter()
    log.parse(raw_1k)
    replay.extend(replay.ReplayState.initial(["sha1", "sha256"]), parsed)
    from services.policy.ima.appraisal import appraise  # noqa: PLC0415

    appraise(parsed, policy.ima)
    ima1k = (time.perf_counter() - t) * 1000
    quote_times = []
    for _ in range(20):
        nonce = v.nonce("bench")
        t = time.perf_counter()
        ev = _evidence(agent, nonce, b"", 0)
        verify.verify_quote(
            bytes(agent.ak_public.marshal()),
            ev.quote_attest,
            ev.quote_signature,
            nonce,
            {(p.bank, p.index): p.value for p in ev.pcr_values},
        )
        quote_times.append((time.perf_counter() - t) * 1000)
    results["quote_roundtrip_ms"] = statistics.median(quote_times)
    results["ima1k_full_ms"] = ima1k + results["quote_roundtrip_ms"]
    # Incremental: 10 new entries after the 20,000 already verified.
    new, _ = _measure(agent, 10, 20000)
    nonce = v.nonce("bench")
    evidence = _evidence(agent, nonce, new, 20000)
    t = time.perf_counter()
    verdict = v.verify(nonce, evidence, "bench")
    results["ima_incremental_ms"] = (time.perf_counter() - t) * 1000
    assert evidence_pb2.Verdict.FromString(verdict.verdict).trusted
    results["setup_extend_20k_s"] = setup_s
    return results


if __name__ == "__main__":
    main()
