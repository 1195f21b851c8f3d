"""Whole directories in and out of volumes, all or nothing.

Both directions build their output in a hidden sibling directory and rename it
into place only when every file has been processed (and, when decrypting,
authenticated), so a failure leaves the destination as it was: no half volume,
no plaintext of a tampered file.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.volume.blob import Progress, no_progress
from services.volume.errors import DestinationError, VolumeError
from services.volume.manifest import DEFAULT_CHUNK, check_path
from services.volume.volume import FileInfo, Volume


@dataclass(frozen=True)
class SourceFile:
    path: str
    source: Path
    size: int


def scan(src: Path) -> list[SourceFile]:
    """The regular files under `src` by volume path; refuses links and special files."""
    if not src.is_dir():
        raise DestinationError(f"{src}: not a directory")
    found: list[SourceFile] = []
    for root, dirs, names in os.walk(src, onerror=_raise):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            full = Path(root) / name
            info = full.lstat()
            if not stat.S_ISREG(info.st_mode):
                raise VolumeError(
                    f"{full}: only regular files go into a volume (links are refused)"
                )
            found.append(
                SourceFile(check_path(full.relative_to(src).as_posix()), full, info.st_size)
            )
    return found


def _raise(err: OSError) -> None:
    raise err


def _check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DestinationError(f"{dest} exists and is not an empty directory; nothing was written")


@contextmanager
def _staged(dest: Path) -> Iterator[Path]:
    """A private sibling of `dest` that becomes `dest` on success and vanishes on failure."""
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.partial-{os.urandom(6).hex()}"
    staging.mkdir(mode=0o700)
    try:
        yield staging
        _check_destination(dest)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def encrypt_dir(
    src: Path,
    dest: Path,
    key: bytes,
    progress: Progress = no_progress,
    chunk_size: int = DEFAULT_CHUNK,
) -> Volume:
    """Encrypts every file under `src` into a new volume at `dest` (version 2)."""
    files = scan(src)
    with _staged(dest) as staging:
        volume = Volume.create(staging, key, chunk_size)
        with volume.update() as change:
            for item in files:
                with item.source.open("rb") as source:
                    change.write(item.path, source, progress)
    return Volume.open(dest, key)


def decrypt_dir(
    volume_dir: Path,
    out: Path,
    key: bytes,
    min_version: int | None = None,
    progress: Progress = no_progress,
) -> list[FileInfo]:
    """Decrypts a whole volume to `out` (files 0600, directories 0700)."""
    return decrypt_volume(Volume.open(volume_dir, key, min_version), out, progress)


def decrypt_volume(volume: Volume, out: Path, progress: Progress = no_progress) -> list[FileInfo]:
    """Decrypts an opened volume's snapshot to `out`, all or nothing."""
    files = volume.list()
    with _staged(out) as staging:
        for info in files:
            target = staging / info.path
            _mkdirs(staging, target.parent)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as sink:
                for chunk in volume.stream(info.path, progress):
                    sink.write(chunk)
    return files


def _mkdirs(root: Path, directory: Path) -> None:
    if directory == root or directory.is_dir():
        return
    _mkdirs(root, directory.parent)
    directory.mkdir(mode=0o700)
