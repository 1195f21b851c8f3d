"""Enclave measurement of the sim platform, derived from a rendered Gramine manifest.

On SGX hardware MRENCLAVE is what `gramine-sgx-sign` computes from the manifest,
the loader and the trusted files. The sim platform cannot load an enclave, so it
derives its MRENCLAVE from the same inputs that decide an enclave's identity:
the rendered manifest bytes and the SHA-256 of every trusted file it lists (each
re-hashed from disk, so a changed file changes the measurement even if the
manifest was not re-rendered). The build renders manifests with this module, so
policies take their expected values from the build output.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

_DOMAIN = b"s3ml-sim-mrenclave-v1\0"


class ManifestError(Exception):
    """The manifest is malformed or a trusted file does not match its hash."""


@dataclass(frozen=True)
class TrustedFile:
    uri: str
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def render_manifest(template: str, trusted: dict[str, Path]) -> str:
    """Fills `{{ trusted_files }}` with Gramine's `sgx.trusted_files` TOML array.

    `trusted` maps each file's path inside the enclave (relative URI) to where
    it is read from now.
    """
    if "{{ trusted_files }}" not in template:
        raise ManifestError("template has no '{{ trusted_files }}' placeholder")
    entries = ",\n".join(
        f'  {{ uri = "file:{uri}", sha256 = "{file_sha256(path)}" }}'
        for uri, path in sorted(trusted.items())
    )
    return template.replace("{{ trusted_files }}", f"[\n{entries},\n]" if entries else "[]")


def trusted_files(manifest: str) -> list[TrustedFile]:
    try:
        parsed = tomllib.loads(manifest)
    except tomllib.TOMLDecodeError as err:
        raise ManifestError(f"manifest is not valid TOML: {err}") from err
    entries = parsed.get("sgx", {}).get("trusted_files", [])
    try:
        return [TrustedFile(str(e["uri"]), str(e["sha256"])) for e in entries]
    except (KeyError, TypeError) as err:
        raise ManifestError("every sgx.trusted_files entry needs uri and sha256") from err


def sim_mrenclave(manifest: str, root: Path) -> bytes:
    """MRENCLAVE of the sim platform for a rendered manifest whose files are under `root`."""
    return sim_mrenclave_with(manifest, lambda rel: root / rel)


def sim_mrenclave_with(manifest: str, resolve: Callable[[str], Path]) -> bytes:
    """As sim_mrenclave, finding each trusted file through `resolve` (build-time paths)."""
    digest = hashlib.sha256(_DOMAIN)
    digest.update(hashlib.sha256(manifest.encode()).digest())
    for entry in trusted_files(manifest):
        path = resolve(entry.uri.removeprefix("file:"))
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ManifestError(f"{entry.uri}: sha256 {actual} differs from the manifest")
        digest.update(entry.uri.encode() + b"\0" + bytes.fromhex(actual))
    return digest.digest()


def mrsigner(public_key: rsa.RSAPublicKey) -> bytes:
    """MRSIGNER as SGX defines it: SHA-256 of the signer's RSA modulus, little-endian."""
    modulus = public_key.public_numbers().n
    return hashlib.sha256(modulus.to_bytes((modulus.bit_length() + 7) // 8, "little")).digest()
