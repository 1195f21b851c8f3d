"""The host agent's TPM operations, through tpm2-tss (tpm2-pytss) and a configurable TCTI.

`device:/dev/tpmrm0` on real hosts, `swtpm:host=...,port=...` here. The EK is
recreated from the TCG template matching its certificate; the attestation key
(AK) is a restricted ECDSA P-256 signing key in the owner hierarchy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_SE,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPML_DIGEST_VALUES,
    TPMT_HA,
    TPMT_SYM_DEF,
    TPMU_HA,
)
from tpm2_pytss.TCTILdr import TCTILdr
from tpm2_pytss.utils import NVReadEK, create_ek_template

# tpm2-tss logs expected probes (e.g. the absent ECC EK index) as errors on stderr;
# failures reach us as exceptions anyway.
os.environ.setdefault("TSS2_LOG", "all+NONE")

AK_ATTRIBUTES = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)
_BANKS = {"sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256}


@dataclass(frozen=True)
class Quote:
    attest: bytes  # TPMS_ATTEST (the TPM2B's buffer)
    signature: bytes  # marshalled TPMT_SIGNATURE
    pcrs: dict[tuple[str, int], bytes]


def selection_text(selection: dict[str, list[int]]) -> str:
    return "+".join(
        f"{bank}:{','.join(map(str, sorted(pcrs)))}" for bank, pcrs in selection.items()
    )


class TpmAgent:
    def __init__(self, tcti: str) -> None:
        name, _, config = tcti.partition(":")
        self._esys = ESAPI(TCTILdr(name, config))
        self.ek_certificate, template = create_ek_template("EK-RSA2048", NVReadEK(self._esys))
        self._ek, self.ek_public, *_ = self._esys.create_primary(
            None, template, ESYS_TR.ENDORSEMENT
        )
        ak_template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=AK_ATTRIBUTES)
        self._ak, self.ak_public, *_ = self._esys.create_primary(None, ak_template, ESYS_TR.OWNER)
        self.ak_name = bytes(self._esys.tr_get_name(self._ak).marshal())

    def close(self) -> None:
        for handle in (self._ak, self._ek):
            self._esys.flush_context(handle)
        self._esys.close()

    def activate_credential(self, blob: bytes, secret: bytes) -> bytes:
        """TPM2_ActivateCredential: only the TPM holding both the EK and the AK can do this."""
        session = self._esys.start_auth_session(
            ESYS_TR.NONE,
            ESYS_TR.NONE,
            TPM2_SE.POLICY,
            TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
            TPM2_ALG.SHA256,
        )
        try:
            self._esys.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
            recovered = self._esys.activate_credential(
                self._ak,
                self._ek,
                TPM2B_ID_OBJECT.unmarshal(blob)[0],
                TPM2B_ENCRYPTED_SECRET.unmarshal(secret)[0],
                session1=ESYS_TR.PASSWORD,
                session2=session,
            )
        finally:
            self._esys.flush_context(session)
        return bytes(recovered)

    def extend(self, pcr: int, digests: dict[str, bytes]) -> None:
        values = TPML_DIGEST_VALUES(
            [
                TPMT_HA(hashAlg=_BANKS[bank], digest=TPMU_HA(**{bank: d}))
                for bank, d in digests.items()
            ]
        )
        self._esys.pcr_extend(getattr(ESYS_TR, f"PCR{pcr}"), values)

    def read_pcrs(self, selection: dict[str, list[int]]) -> dict[tuple[str, int], bytes]:
        """PCR values, read eight at a time (the TPM's limit per command)."""
        out: dict[tuple[str, int], bytes] = {}
        for bank, pcrs in selection.items():
            ordered = sorted(pcrs)
            for start in range(0, len(ordered), 8):
                chunk = ordered[start : start + 8]
                _, _, values = self._esys.pcr_read(selection_text({bank: chunk}))
                out.update({(bank, i): bytes(v) for i, v in zip(chunk, values, strict=True)})
        return out

    def quote(self, nonce: bytes, selection: dict[str, list[int]]) -> Quote:
        attest, signature = self._esys.quote(self._ak, selection_text(selection), nonce)
        return Quote(bytes(attest), bytes(signature.marshal()), self.read_pcrs(selection))
