"""Quote collateral, in the shape Intel's PCS serves it (and dcap-qvl consumes it).

TCB info and QE identity are JSON bodies signed (ECDSA P-256, r||s, hex) by the
TCB signing certificate, whose chain ends at the same root as the PCK chain.
The signature covers the exact bytes of the inner object as served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Collateral:
    """What a verifier needs besides the quote; same fields as dcap-qvl's V3 collateral."""

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                name: value.hex() if isinstance(value, bytes) else value
                for name, value in self.__dict__.items()
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Collateral:
        raw: dict[str, Any] = json.loads(text)
        unhex = bytes.fromhex
        return cls(
            pck_crl_issuer_chain=str(raw["pck_crl_issuer_chain"]),
            root_ca_crl=unhex(raw["root_ca_crl"]),
            pck_crl=unhex(raw["pck_crl"]),
            tcb_info_issuer_chain=str(raw["tcb_info_issuer_chain"]),
            tcb_info=str(raw["tcb_info"]),
            tcb_info_signature=unhex(raw["tcb_info_signature"]),
            qe_identity_issuer_chain=str(raw["qe_identity_issuer_chain"]),
            qe_identity=str(raw["qe_identity"]),
            qe_identity_signature=unhex(raw["qe_identity_signature"]),
        )


# TCB statuses from best to worst (Intel PCS API, TCB info v3).
TCB_STATUS_ORDER = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


def worst(a: str, b: str) -> str:
    rank = {status: i for i, status in enumerate(TCB_STATUS_ORDER)}
    return a if rank.get(a, len(rank)) >= rank.get(b, len(rank)) else b
