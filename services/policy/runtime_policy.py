"""Runtime policies, loaded from a JSON document (named, digest-identified).

{"allowlist": {"/usr/bin/python3": ["<sha256 hex>", ...]},
 "ima_keys": ["-----BEGIN PUBLIC KEY-----..."],
 "excludes": ["/var/log/.*"],
 "boot_aggregate": ["<hex>"],
 "pcrs": {"sha256:0": "<hex>", ...}}     # measured-boot expectations
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.policy.ima.appraisal import RuntimePolicy, key_id

FIELDS = {"allowlist", "ima_keys", "excludes", "boot_aggregate", "pcrs"}


class PolicyError(Exception):
    """The runtime policy document is malformed; the message names the field."""


@dataclass(frozen=True)
class HostPolicy:
    name: str
    digest: bytes
    ima: RuntimePolicy
    pcrs: dict[tuple[str, int], bytes]


def _key(pem: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise PolicyError("ima_keys: only RSA and EC keys sign IMA files")
    return key


def load(name: str, document: bytes) -> HostPolicy:
    try:
        raw: dict[str, Any] = json.loads(document)
        unknown = set(raw) - FIELDS
        if unknown:
            raise PolicyError(f"unknown field {sorted(unknown)[0]!r}")
        keys = [_key(p) for p in raw.get("ima_keys", [])]
        ima = RuntimePolicy(
            allowlist={str(k): frozenset(v) for k, v in raw.get("allowlist", {}).items()},
            keys={key_id(k): k for k in keys},
            excludes=tuple(re.compile(p) for p in raw.get("excludes", [])),
            expected_boot_aggregate=frozenset(raw.get("boot_aggregate", [])),
        )
        pcrs = {}
        for selector, value in raw.get("pcrs", {}).items():
            bank, _, index = selector.partition(":")
            pcrs[(bank, int(index))] = bytes.fromhex(value)
    except (ValueError, TypeError, AttributeError, re.error) as err:
        raise PolicyError(f"runtime policy {name!r}: {err}") from err
    return HostPolicy(name, hashlib.sha256(document).digest(), ima, pcrs)
