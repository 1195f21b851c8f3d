"""A plaintext tree worth encrypting, and ways to reach inside a volume as an attacker would."""

from __future__ import annotations

import os
from pathlib import Path

from services.volume import keys, manifest
from services.volume.volume import BLOBS, MANIFEST

CHUNK = 1024  # small chunks: many of them, quickly

TREE: dict[str, bytes] = {
    "README.txt": b"top secret model card\n",
    "empty": b"",
    "weights/layer0.bin": os.urandom(5 * CHUNK + 17),  # six chunks, the last partial
    "weights/exact.bin": os.urandom(2 * CHUNK),  # chunk boundary
    "deep/a/b/c/d.json": b'{"labels": ["cat", "dog"]}',
}


def write_tree(root: Path, tree: dict[str, bytes] = TREE) -> Path:
    for path, data in tree.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def entries(volume_dir: Path, key: bytes) -> dict[str, manifest.FileEntry]:
    return manifest.unseal((volume_dir / MANIFEST).read_bytes(), key).files


def blob_of(volume_dir: Path, key: bytes, path: str) -> Path:
    """Where the blob of `path` is; an attacker without the key cannot compute this."""
    entry = entries(volume_dir, key)[path]
    volume_id = manifest.volume_id_of((volume_dir / MANIFEST).read_bytes())
    return volume_dir / BLOBS / keys.blob_name(key, volume_id, path, entry.salt)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's bytes (and names) under `directory`, to prove nothing changed."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
