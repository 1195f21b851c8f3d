"""Stakeholder policy documents (Perun Listing 1.1): strict YAML into frozen values.

Anything the schema does not name is an error naming the field, so a typo
("exports:") can never silently widen or narrow what a policy grants. The
canonical encoding — what a stakeholder signs — is compact sorted-key JSON of
the parsed document, so YAML formatting, comments and key order do not matter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from services.attest.errors import InvalidArgumentError

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_VOLUMES = 64
MAX_LIST = 64
HIGH_ASSURANCE = "high_assurance"
HIGH_INTEGRITY = "high_integrity"
SECURITY_LEVELS = (HIGH_ASSURANCE, HIGH_INTEGRITY)
_PART = r"[a-z0-9][a-z0-9_.-]{0,62}"
NAME_RE = re.compile(rf"^{_PART}/{_PART}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]{1,254}$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")


class DocumentError(InvalidArgumentError):
    """The document is not a valid policy; the message names the field."""


@dataclass(frozen=True)
class Volume:
    """A mount path: own (optionally exported to other policies) or imported."""

    path: str
    imports: str = ""  # policy whose volume this mounts (read access)
    source: str = ""  # path of the volume in the exporting policy (default: `path`)
    exports: tuple[str, ...] = ()  # policies that may import this own volume

    @property
    def own(self) -> bool:
        return not self.imports

    @property
    def source_path(self) -> str:
        return self.source or self.path


@dataclass(frozen=True)
class Integrity:
    mrenclave: tuple[bytes, ...] = ()  # high_assurance: acceptable enclave measurements
    code_hash: bytes = b""  # high_integrity: SHA-256 of the workload code


@dataclass(frozen=True)
class OperatingSystem:
    """What a high_integrity host must be, as the TPM/IMA verifier's verdict says."""

    hosts: tuple[str, ...] = ()
    ek_digests: tuple[bytes, ...] = ()
    runtime_policy: str = ""
    runtime_policy_digest: bytes = b""
    certificate_chain: str = ""  # EK manufacturer chain, enforced by the verifier


@dataclass(frozen=True)
class PolicyDocument:
    name: str
    version: int
    command: str
    security_level: str
    integrity: Integrity
    volumes: tuple[Volume, ...]
    operating_system: OperatingSystem | None
    stakeholder_der: bytes  # SubjectPublicKeyInfo of the owning key

    @property
    def stakeholder(self) -> str:
        return self.name.split("/", 1)[0]

    def imports(self) -> tuple[Volume, ...]:
        return tuple(v for v in self.volumes if not v.own)


_TOP = {
    "name", "version", "command", "security_level", "integrity", "volumes",
    "operating_system", "stakeholder",
}  # fmt: skip
_REQUIRED = {"name", "version", "security_level", "integrity", "stakeholder"}
_VOLUME = {"path", "import", "from", "export"}
_INTEGRITY = {"mrenclave", "code_hash"}
_OS = {"hosts", "ek_digests", "runtime_policy", "runtime_policy_digest", "certificate_chain"}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DocumentError(f"duplicate field {key!r}")
        seen.add(key)
    return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse(raw: bytes) -> PolicyDocument:
    """Parses and validates a YAML policy; raises DocumentError naming the problem."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"policy document is over {MAX_DOCUMENT_BYTES} bytes")
    try:
        tree = yaml.load(raw.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 - strict safe loader
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise DocumentError(f"policy is not valid YAML: {str(err)[:200]}") from err
    top = _fields(tree, "policy", _TOP, _REQUIRED)
    name = _name(top["name"], "name")
    level = _text(top["security_level"], "security_level")
    if level not in SECURITY_LEVELS:
        raise DocumentError(f"security_level must be one of {', '.join(SECURITY_LEVELS)}")
    version = top["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**53:
        raise DocumentError("version must be a positive integer")
    document = PolicyDocument(
        name=name,
        version=version,
        command=_text(top.get("command", ""), "command"),
        security_level=level,
        integrity=_integrity(top["integrity"]),
        volumes=_volumes(top.get("volumes") or [], name),
        operating_system=None
        if top.get("operating_system") is None
        else _operating_system(top["operating_system"]),
        stakeholder_der=_public_key(top["stakeholder"]),
    )
    _check_level(document)
    return document


def canonical(document: PolicyDocument) -> bytes:
    """The bytes a stakeholder signs: compact sorted-key JSON of the parsed policy.

    Field names are the YAML ones, every field is present (defaults filled
    in), hashes and the DER key are lowercase hex, export lists sorted — so
    another tool can reproduce it (docs/policies.md).
    """
    host = document.operating_system
    tree = {
        "name": document.name,
        "version": document.version,
        "command": document.command,
        "security_level": document.security_level,
        "integrity": {
            "mrenclave": [m.hex() for m in document.integrity.mrenclave],
            "code_hash": document.integrity.code_hash.hex(),
        },
        "volumes": [
            {"path": v.path, "import": v.imports, "from": v.source, "export": list(v.exports)}
            for v in document.volumes
        ],
        "operating_system": None
        if host is None
        else {
            "hosts": list(host.hosts),
            "ek_digests": [d.hex() for d in host.ek_digests],
            "runtime_policy": host.runtime_policy,
            "runtime_policy_digest": host.runtime_policy_digest.hex(),
            "certificate_chain": host.certificate_chain,
        },
        "stakeholder": document.stakeholder_der.hex(),
    }
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_level(document: PolicyDocument) -> None:
    if document.security_level == HIGH_ASSURANCE and not document.integrity.mrenclave:
        raise DocumentError("integrity.mrenclave is required for high_assurance")
    if document.security_level == HIGH_INTEGRITY:
        if not document.integrity.code_hash:
            raise DocumentError("integrity.code_hash is required for high_integrity")
        host = document.operating_system
        if host is None or not (host.hosts or host.ek_digests):
            raise DocumentError(
                "operating_system.hosts or operating_system.ek_digests is required for "
                "high_integrity (which hosts' verdicts count)"
            )


def _fields(tree: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise DocumentError(f"{where} must be a mapping")
    for key in tree:
        if key not in allowed:
            raise DocumentError(f"unknown field {where}.{str(key)[:64]}")
    for key in sorted(required):
        if key not in tree:
            raise DocumentError(f"{where}.{key} is required")
    return tree


def _text(value: Any, field: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise DocumentError(f"{field} must be text of at most {limit} characters")
    return value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise DocumentError(
            f"{field} must be 'stakeholder/asset' (lowercase letters, digits, _ . -)"
        )
    return value


def _hex32(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise DocumentError(f"{field} must be quoted hex text (64 hex digits)")
    try:
        raw = bytes.fromhex(value)
    except ValueError as err:
        raise DocumentError(f"{field} is not hex") from err
    if len(raw) != 32:
        raise DocumentError(f"{field} must be 32 bytes (64 hex digits)")
    return raw


def _list(value: Any, field: str) -> list[Any]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_LIST:
        raise DocumentError(f"{field} must be a list of at most {MAX_LIST} items")
    return items


def _integrity(tree: Any) -> Integrity:
    fields = _fields(tree, "integrity", _INTEGRITY, set())
    mrenclave = _list(fields.get("mrenclave", []), "integrity.mrenclave")
    code_hash = fields.get("code_hash")
    return Integrity(
        mrenclave=tuple(_hex32(m, "integrity.mrenclave") for m in mrenclave),
        code_hash=b"" if code_hash is None else _hex32(code_hash, "integrity.code_hash"),
    )


def _volumes(tree: Any, name: str) -> tuple[Volume, ...]:
    if not isinstance(tree, list) or len(tree) > MAX_VOLUMES:
        raise DocumentError(f"volumes must be a list of at most {MAX_VOLUMES}")
    volumes = []
    for index, item in enumerate(tree):
        where = f"volumes[{index}]"
        fields = _fields(item, where, _VOLUME, {"path"})
        path = fields["path"]
        if not isinstance(path, str) or not PATH_RE.match(path) or ".." in path:
            raise DocumentError(f"{where}.path must be an absolute path without '..'")
        imports = "" if fields.get("import") is None else _name(fields["import"], f"{where}.import")
        exports = tuple(_name(e, f"{where}.export") for e in _list(fields.get("export", []), where))
        source = fields.get("from", "")
        if source and (not imports or not isinstance(source, str) or not PATH_RE.match(source)):
            raise DocumentError(f"{where}.from is an absolute path, only with import")
        if imports and exports:
            raise DocumentError(f"{where} cannot both import and export")
        if imports == name:
            raise DocumentError(f"{where}.import references the policy itself")
        volumes.append(Volume(path, imports, source, tuple(sorted(set(exports)))))
    paths = [v.path for v in volumes]
    if len(set(paths)) != len(paths):
        raise DocumentError("volume paths must be unique")
    return tuple(volumes)


def _operating_system(tree: Any) -> OperatingSystem:
    fields = _fields(tree, "operating_system", _OS, set())
    hosts = _list(fields.get("hosts", []), "operating_system.hosts")
    for host in hosts:
        if not isinstance(host, str) or not HOST_RE.match(host):
            raise DocumentError("operating_system.hosts must be host names")
    digest = fields.get("runtime_policy_digest")
    return OperatingSystem(
        hosts=tuple(hosts),
        ek_digests=tuple(
            _hex32(d, "operating_system.ek_digests")
            for d in _list(fields.get("ek_digests", []), "operating_system.ek_digests")
        ),
        runtime_policy=_text(fields.get("runtime_policy", ""), "operating_system.runtime_policy"),
        runtime_policy_digest=b""
        if digest is None
        else _hex32(digest, "operating_system.runtime_policy_digest"),
        certificate_chain=_text(
            fields.get("certificate_chain", ""), "operating_system.certificate_chain", 32768
        ),
    )


def _public_key(value: Any) -> bytes:
    if not isinstance(value, str):
        raise DocumentError("stakeholder must be a PEM public key")
    try:
        key = serialization.load_pem_public_key(value.encode())
    except ValueError as err:
        raise DocumentError("stakeholder is not a PEM public key") from err
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
