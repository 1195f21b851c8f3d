"""Stored ACS records and their canonical JSON encoding."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from services.attest.appraisal import Policy, Signer
from services.attest.errors import InvalidArgumentError

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")


def check_service_name(name: str) -> None:
    if not _LABEL.match(name):
        raise InvalidArgumentError(
            f"service name {name[:70]!r} must be a lowercase DNS label (a-z, 0-9, '-', ≤63)"
        )


def check_dns_name(name: str) -> None:
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidArgumentError(f"DNS name {name[:70]!r} is not a valid lowercase host name")


_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


def instance_name(name: str, public_key_der: bytes) -> str:
    """The instance's label; an unnamed instance is named after its key."""
    if not name:
        return "instance-" + hashlib.sha256(public_key_der).hexdigest()[:12]
    if not _INSTANCE.match(name):
        raise InvalidArgumentError(
            f"instance_name {name[:70]!r} may use letters, digits and . _ - (≤128)"
        )
    return name


def check_secret_name(name: str) -> None:
    if not _SECRET_NAME.match(name):
        raise InvalidArgumentError(
            f"secret name {name[:70]!r} may use letters, digits and _ . - / (≤128)"
        )


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    dns_names: tuple[str, ...]
    policy: Policy
    secret_names: tuple[str, ...]
    config: bytes
    revision: int


def _policy_json(policy: Policy) -> dict[str, Any]:
    return {
        "mrenclave": sorted(m.hex() for m in policy.mr_enclaves),
        "signers": [
            {
                "mrsigner": s.mr_signer.hex(),
                "isv_prod_id": s.isv_prod_id,
                "min_isv_svn": s.min_isv_svn,
            }
            for s in policy.signers
        ],
        "insecure_allow_debug": policy.insecure_allow_debug,
        "allowed_tcb_statuses": sorted(policy.allowed_tcb_statuses),
    }


def _policy_from(raw: dict[str, Any]) -> Policy:
    return Policy(
        mr_enclaves=frozenset(bytes.fromhex(m) for m in raw["mrenclave"]),
        signers=tuple(
            Signer(bytes.fromhex(s["mrsigner"]), s["isv_prod_id"], s["min_isv_svn"])
            for s in raw["signers"]
        ),
        insecure_allow_debug=raw["insecure_allow_debug"],
        allowed_tcb_statuses=frozenset(raw["allowed_tcb_statuses"]),
    )


def encode_service(record: ServiceRecord) -> bytes:
    return json.dumps(
        {
            "name": record.name,
            "dns_names": list(record.dns_names),
            "policy": _policy_json(record.policy),
            "secret_names": list(record.secret_names),
            "config": base64.b64encode(record.config).decode(),
            "revision": record.revision,
        },
        sort_keys=True,
    ).encode()


def decode_service(raw: bytes) -> ServiceRecord:
    data = json.loads(raw)
    return ServiceRecord(
        name=data["name"],
        dns_names=tuple(data["dns_names"]),
        policy=_policy_from(data["policy"]),
        secret_names=tuple(data["secret_names"]),
        config=base64.b64decode(data["config"]),
        revision=data["revision"],
    )


def check_policy(policy: Policy) -> None:
    """A policy must admit something, with well-formed measurements."""
    if not policy.mr_enclaves and not policy.signers:
        raise InvalidArgumentError("policy admits no enclave: give an MRENCLAVE or a signer")
    for value in [*policy.mr_enclaves, *(s.mr_signer for s in policy.signers)]:
        if len(value) != 32:
            raise InvalidArgumentError(f"measurements are 32 bytes, got {len(value)}")
    if not policy.allowed_tcb_statuses:
        raise InvalidArgumentError("policy allows no TCB status; use at least UpToDate")
