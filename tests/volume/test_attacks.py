"""An attacker with the volume directory but not the key: every change is caught, nothing leaks.

Each case alters a real volume the way the threat model allows (edit, cut, swap,
reorder, delete, roll back, replay from another volume) and then decrypts it: the
decryption must fail with its own error naming the file, and must write nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.volume import keys, transfer
from services.volume.errors import (
    MissingBlobError,
    NotAVolumeError,
    RollbackError,
    TamperedError,
    TruncatedError,
    VolumeError,
    WrongKeyError,
)
from services.volume.volume import MANIFEST, Volume
from tests.volume.fixtures import CHUNK, blob_of, snapshot, write_tree

TAG = 16
BIG = "weights/layer0.bin"


@dataclass
class Scene:
    volume: Path
    key: bytes
    old: Path  # a copy of the volume at version 2, before BIG was rewritten
    tmp: Path
    min_version: int | None = None


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    key = keys.new_key()
    transfer.encrypt_dir(write_tree(tmp_path / "src"), tmp_path / "vol", key, chunk_size=CHUNK)
    shutil.copytree(tmp_path / "vol", tmp_path / "old")
    Volume.open(tmp_path / "vol", key).write_bytes(BIG, b"retrained" * 700)
    return Scene(tmp_path / "vol", key, tmp_path / "old", tmp_path)


def _edit(path: Path, edit: Callable[[bytearray], bytearray]) -> None:
    path.write_bytes(bytes(edit(bytearray(path.read_bytes()))))


def flip_byte(s: Scene) -> None:
    def flip(b: bytearray) -> bytearray:
        b[len(b) // 2] ^= 0x01
        return b

    _edit(blob_of(s.volume, s.key, BIG), flip)


def truncate(s: Scene) -> None:
    _edit(blob_of(s.volume, s.key, BIG), lambda b: b[:-10])


def drop_last_chunk(s: Scene) -> None:
    _edit(blob_of(s.volume, s.key, BIG), lambda b: b[: -(CHUNK + TAG)])


def extend(s: Scene) -> None:
    _edit(blob_of(s.volume, s.key, BIG), lambda b: b + bytes(CHUNK + TAG))


def swap_blobs(s: Scene) -> None:
    a, b = blob_of(s.volume, s.key, "README.txt"), blob_of(s.volume, s.key, "empty")
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


def reorder_chunks(s: Scene) -> None:
    def swap(b: bytearray) -> bytearray:
        size, start = CHUNK + TAG, 8
        one, two = b[start + size : start + 2 * size], b[start + 2 * size : start + 3 * size]
        return b[: start + size] + two + one + b[start + 3 * size :]

    _edit(blob_of(s.volume, s.key, BIG), swap)


def delete_blob(s: Scene) -> None:
    blob_of(s.volume, s.key, "deep/a/b/c/d.json").unlink()


def tamper_manifest(s: Scene) -> None:
    def flip(b: bytearray) -> bytearray:
        b[-100] ^= 0x80
        return b

    _edit(s.volume / MANIFEST, flip)


def truncate_manifest(s: Scene) -> None:
    _edit(s.volume / MANIFEST, lambda b: b[:200])


def mangle_magic(s: Scene) -> None:
    _edit(s.volume / MANIFEST, lambda b: bytearray(b"X") + b[1:])


def old_manifest(s: Scene) -> None:
    shutil.copyfile(s.old / MANIFEST, s.volume / MANIFEST)


def old_manifest_with_anchor(s: Scene) -> None:
    old_manifest(s)
    s.min_version = 3


def whole_volume_rolled_back(s: Scene) -> None:
    shutil.rmtree(s.volume)
    shutil.copytree(s.old, s.volume)
    s.min_version = 3


def old_blob_under_new_name(s: Scene) -> None:
    old = blob_of(s.old, s.key, BIG).read_bytes()
    new = blob_of(s.volume, s.key, BIG)
    new.write_bytes(
        (old + bytes(CHUNK + TAG))[: new.stat().st_size]
    )  # sized to pass the length check


def blob_from_another_volume(s: Scene) -> None:
    other = s.tmp / "other"
    transfer.encrypt_dir(s.tmp / "src", other, s.key, chunk_size=CHUNK)
    target = blob_of(s.volume, s.key, "README.txt")
    target.write_bytes(blob_of(other, s.key, "README.txt").read_bytes())


def manifest_from_another_volume(s: Scene) -> None:
    other = s.tmp / "other"
    transfer.encrypt_dir(s.tmp / "src", other, s.key, chunk_size=CHUNK)
    shutil.copyfile(other / MANIFEST, s.volume / MANIFEST)


def wrong_key(s: Scene) -> None:
    s.key = keys.new_key()


CASES: list[tuple[Callable[[Scene], None], type[VolumeError], str]] = [
    (flip_byte, TamperedError, rf"file '{BIG}': chunk \d of 7 failed authentication"),
    (truncate, TruncatedError, rf"file '{BIG}': blob is \d+ bytes, .* \(truncated\)"),
    (drop_last_chunk, TruncatedError, rf"file '{BIG}': .*\(truncated\)"),
    (extend, TruncatedError, rf"file '{BIG}': .*\(extended\)"),
    (swap_blobs, TamperedError, r"file '(README.txt|empty)': chunk 0 of 1 failed authentication"),
    (reorder_chunks, TamperedError, rf"file '{BIG}': chunk 1 of 7 failed .*reordered"),
    (delete_blob, MissingBlobError, r"file 'deep/a/b/c/d.json': its blob is missing"),
    (tamper_manifest, TamperedError, r"manifest: authentication failed"),
    (truncate_manifest, TamperedError, r"manifest: authentication failed"),
    (mangle_magic, NotAVolumeError, r"not an s3ml volume manifest"),
    (old_manifest, MissingBlobError, rf"file '{BIG}': its blob is missing .*rolled back"),
    (old_manifest_with_anchor, RollbackError, r"version 2 is older than the 3 last seen"),
    (whole_volume_rolled_back, RollbackError, r"version 2 is older than the 3 last seen"),
    (old_blob_under_new_name, TamperedError, rf"file '{BIG}': chunk 0 of 7 failed"),
    (blob_from_another_volume, TamperedError, r"file 'README.txt': chunk 0 of 1 failed"),
    (manifest_from_another_volume, MissingBlobError, r"its blob is missing"),
    (wrong_key, WrongKeyError, r"not this volume's key"),
]


@pytest.mark.parametrize(("attack", "error", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_attack_detected_and_nothing_written(
    scene: Scene, attack: Callable[[Scene], None], error: type[VolumeError], message: str
) -> None:
    attack(scene)
    before = snapshot(scene.volume)
    out = scene.tmp / "out"
    with pytest.raises(error, match=message):
        transfer.decrypt_dir(scene.volume, out, scene.key, scene.min_version)
    assert not out.exists()
    assert not [p for p in scene.tmp.iterdir() if p.name.startswith(".out")]
    assert snapshot(scene.volume) == before


def test_untouched_scene_decrypts(scene: Scene) -> None:
    """The control: without an attack the same volume decrypts, at the anchored version."""
    files = transfer.decrypt_dir(scene.volume, scene.tmp / "out", scene.key, min_version=3)
    assert (scene.tmp / "out" / BIG).read_bytes() == b"retrained" * 700
    assert len(files) == 5


def test_streaming_reader_stops_before_the_bad_chunk(scene: Scene) -> None:
    def flip_chunk_three(b: bytearray) -> bytearray:
        b[8 + 3 * (CHUNK + TAG) + 5] ^= 0x01
        return b

    _edit(blob_of(scene.volume, scene.key, BIG), flip_chunk_three)
    stream = Volume.open(scene.volume, scene.key).stream(BIG)
    got = [next(stream) for _ in range(3)]
    assert b"".join(got) == (b"retrained" * 700)[: 3 * CHUNK]
    with pytest.raises(TamperedError, match="chunk 3 of 7"):
        next(stream)
