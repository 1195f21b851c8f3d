"""A volume opened with its key: list, read, stream, write, replace and delete files.

Layout: `<dir>/manifest` (see manifest.py) and `<dir>/blobs/<keyed hash>` (see
blob.py). A change writes new blobs first, then replaces the manifest atomically
(write, fsync, rename) with the volume version plus one, then removes the blobs
it made obsolete: a crash leaves either the old or the new volume, plus at most
some unreferenced blobs, never a mix. One writer at a time (a lock file); a
writer whose snapshot is stale is refused rather than losing the other's change.

Rollback of the whole directory to an older copy is consistent by construction
and cannot be seen from inside; callers pass the last version they saw (kept by
the ACS or the caller) as `min_version`.
"""

from __future__ import annotations

import fcntl
import hmac
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from services.volume import blob, keys
from services.volume import manifest as mf
from services.volume.errors import (
    ConcurrentUpdateError,
    DestinationError,
    NoSuchFileError,
    NotAVolumeError,
    RollbackError,
    VolumeError,
)

MANIFEST = "manifest"
BLOBS = "blobs"
LOCK = ".lock"
_SALT = 16
MIN_CHUNK = 512
MAX_CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    version: int


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage_manifest(directory: Path, manifest: mf.Manifest, key: bytes) -> Path:
    """The new manifest, durable under a temporary name; renaming it is the commit."""
    tmp = directory / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(mf.seal(manifest, key))
        out.flush()
        os.fsync(out.fileno())
    return tmp


def _write_manifest(directory: Path, manifest: mf.Manifest, key: bytes) -> None:
    os.replace(_stage_manifest(directory, manifest, key), directory / MANIFEST)
    _fsync_dir(directory)


def _read_manifest(directory: Path, key: bytes) -> mf.Manifest:
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError as err:
        raise NotAVolumeError(f"{directory}: no volume here (no manifest)") from err
    return mf.unseal(raw, key)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Volume:
    """A snapshot of a volume's manifest plus the key to read and change it."""

    def __init__(self, directory: Path, key: bytes, manifest: mf.Manifest) -> None:
        self.directory = directory
        self._key = key
        self._manifest = manifest

    @classmethod
    def create(cls, directory: Path, key: bytes, chunk_size: int = mf.DEFAULT_CHUNK) -> Volume:
        """An empty volume (version 1) in `directory`, which may exist but holds no volume."""
        keys.check_key(key)
        if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise VolumeError(f"chunk size {chunk_size} is outside [{MIN_CHUNK}, {MAX_CHUNK}]")
        if (directory / MANIFEST).exists():
            raise DestinationError(f"{directory} already holds a volume")
        (directory / BLOBS).mkdir(mode=0o700, parents=True, exist_ok=True)
        manifest = mf.Manifest(os.urandom(mf.VOLUME_ID_BYTES), 1, chunk_size)
        _write_manifest(directory, manifest, key)
        return cls(directory, key, manifest)

    @classmethod
    def open(cls, directory: Path, key: bytes, min_version: int | None = None) -> Volume:
        """Opens and authenticates the manifest; `min_version` is the rollback anchor."""
        manifest = _read_manifest(directory, key)
        if min_version is not None and manifest.version < min_version:
            raise RollbackError(
                f"{directory}: volume version {manifest.version} is older than the "
                f"{min_version} last seen (rolled back to an earlier copy)"
            )
        return cls(directory, key, manifest)

    @property
    def version(self) -> int:
        return self._manifest.version

    @property
    def volume_id(self) -> bytes:
        return self._manifest.volume_id

    def list(self) -> list[FileInfo]:
        return [
            FileInfo(e.path, e.size, e.version)
            for e in sorted(self._manifest.files.values(), key=lambda e: e.path)
        ]

    def _entry(self, path: str) -> mf.FileEntry:
        entry = self._manifest.files.get(mf.check_path(path))
        if entry is None:
            raise NoSuchFileError(f"'{path[:200]}' is not in the volume")
        return entry

    def _context(self, entry: mf.FileEntry) -> blob.BlobContext:
        m = self._manifest
        fkey = keys.file_key(self._key, m.volume_id, entry.path, entry.version, entry.salt)
        return blob.BlobContext(fkey, m.volume_id, entry.path, entry.version, m.chunk_size)

    def _blob_path(self, path: str, salt: bytes) -> Path:
        return self.directory / BLOBS / keys.blob_name(self._key, self.volume_id, path, salt)

    def stream(self, path: str, progress: blob.Progress | None = None) -> Iterator[bytes]:
        """The file's plaintext in chunks; a fault raises before the bad chunk is yielded."""
        entry = self._entry(path)
        location = self._blob_path(entry.path, entry.salt)
        if not location.exists():
            self._refuse_if_changed()
        return blob.read(
            location,
            self._context(entry),
            entry.size,
            entry.tags,
            progress or blob.no_progress,
        )

    def _refuse_if_changed(self) -> None:
        """A blob gone because a writer replaced it is not an attack: say so precisely."""
        on_disk = _read_manifest(self.directory, self._key)
        if on_disk.version > self.version:
            raise ConcurrentUpdateError(
                f"{self.directory}: changed to version {on_disk.version} since it was "
                f"opened at {self.version}; reopen to read the current files"
            )

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.stream(path))

    def verify(self, progress: blob.Progress | None = None) -> None:
        """Authenticates every file; raises the first fault found."""
        for info in self.list():
            for _ in self.stream(info.path, progress):
                pass

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.update() as change:
            change.write(path, io.BytesIO(data))

    def write_stream(self, path: str, source: BinaryIO) -> None:
        with self.update() as change:
            change.write(path, source)

    def delete(self, path: str) -> None:
        with self.update() as change:
            change.delete(path)

    @contextmanager
    def update(self) -> Iterator[Change]:
        """Several writes and deletes committed as one new version, or none on error."""
        change = Change(self)
        try:
            yield change
        except BaseException:
            change.discard()
            raise
        self._manifest = change.commit()


class Change:
    """Pending writes and deletes; nothing is visible until `commit`."""

    def __init__(self, volume: Volume) -> None:
        self._volume = volume
        self._base = volume._manifest
        self._files = dict(self._base.files)
        self._new_blobs: dict[str, Path] = {}
        self.version = self._base.version + 1

    def write(self, path: str, source: BinaryIO, progress: blob.Progress | None = None) -> None:
        path = mf.check_path(path)
        salt = os.urandom(_SALT)
        volume = self._volume
        entry = mf.FileEntry(path, 0, self.version, salt, b"")
        dest = volume._blob_path(path, salt)
        ctx = volume._context(entry)
        size, digest = blob.write(dest, ctx, source, progress or blob.no_progress)
        self._drop_new(path)
        self._new_blobs[path] = dest
        self._files[path] = replace(entry, size=size, tags=digest)

    def delete(self, path: str) -> None:
        path = mf.check_path(path)
        if path not in self._files:
            raise NoSuchFileError(f"'{path}' is not in the volume")
        self._drop_new(path)
        del self._files[path]

    def _drop_new(self, path: str) -> None:
        old = self._new_blobs.pop(path, None)
        if old is not None:
            old.unlink(missing_ok=True)

    def discard(self) -> None:
        for dest in self._new_blobs.values():
            dest.unlink(missing_ok=True)
        self._new_blobs.clear()

    def _check_base(self) -> None:
        volume = self._volume
        on_disk = _read_manifest(volume.directory, volume._key)
        if on_disk.version != self._base.version or not hmac.compare_digest(
            on_disk.volume_id, self._base.volume_id
        ):
            raise ConcurrentUpdateError(
                f"{volume.directory}: changed to version {on_disk.version} since it was "
                f"opened at {self._base.version}; reopen and retry"
            )

    def commit(self) -> mf.Manifest:
        volume = self._volume
        new = mf.Manifest(self._base.volume_id, self.version, self._base.chunk_size, self._files)
        with _locked(volume.directory):
            try:
                self._check_base()
                _fsync_dir(volume.directory / BLOBS)  # new blobs durable before they are named
                staged = _stage_manifest(volume.directory, new, volume._key)
            except BaseException:
                self.discard()
                raise
            os.replace(staged, volume.directory / MANIFEST)
            _fsync_dir(volume.directory)
        for path, entry in self._base.files.items():
            if self._files.get(path) is not entry:
                volume._blob_path(path, entry.salt).unlink(missing_ok=True)
        return new
