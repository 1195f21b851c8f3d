"""Round trips through real volumes on disk: what goes in comes out, and nothing leaks by name or size."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from services.volume import keys, transfer
from services.volume.errors import (
    ConcurrentUpdateError,
    DestinationError,
    InvalidPathError,
    NoSuchFileError,
    VolumeError,
)
from services.volume.manifest import DEFAULT_CHUNK
from services.volume.volume import BLOBS, Volume
from tests.volume.fixtures import CHUNK, TREE, read_tree, snapshot, write_tree


@pytest.fixture
def key() -> bytes:
    return keys.new_key()


def test_directory_round_trip(tmp_path: Path, key: bytes) -> None:
    src = write_tree(tmp_path / "src")
    volume = transfer.encrypt_dir(src, tmp_path / "vol", key, chunk_size=CHUNK)
    assert {f.path: f.size for f in volume.list()} == {p: len(d) for p, d in TREE.items()}
    files = transfer.decrypt_dir(tmp_path / "vol", tmp_path / "out", key)
    assert len(files) == len(TREE)
    assert read_tree(tmp_path / "out") == TREE
    for path in TREE:
        assert stat.S_IMODE((tmp_path / "out" / path).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out" / "deep" / "a").stat().st_mode) == 0o700
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_big_file_streams_over_many_default_chunks(tmp_path: Path, key: bytes) -> None:
    data = os.urandom(5 * DEFAULT_CHUNK + 123)
    volume = Volume.create(tmp_path / "vol", key)
    volume.write_stream("big.bin", io.BytesIO(data))
    seen: list[int] = []
    parts = list(Volume.open(tmp_path / "vol", key).stream("big.bin", seen.append))
    assert len(parts) == 6
    assert max(len(p) for p in parts) == DEFAULT_CHUNK
    assert b"".join(parts) == data
    assert sum(seen) == len(data)


def test_names_contents_and_sizes_do_not_show(tmp_path: Path, key: bytes) -> None:
    tree = {"secret-name.txt": b"A" * 3, "other/secret-dir-file": b"B" * (CHUNK - 1)}
    volume = transfer.encrypt_dir(
        write_tree(tmp_path / "src", tree), tmp_path / "v", key, chunk_size=CHUNK
    )
    on_disk = snapshot(volume.directory)
    everything = b"".join(name.encode() + data for name, data in on_disk.items())
    for path, data in tree.items():
        for word in (path.encode(), path.split("/")[-1].encode(), b"secret", data):
            assert word not in everything
    blob_sizes = {len(data) for name, data in on_disk.items() if name.startswith(BLOBS)}
    assert len(blob_sizes) == 1  # 3 bytes and 1023 bytes look the same
    assert all(len(Path(n).name) == 64 for n in on_disk if n.startswith(BLOBS))


def test_manifest_size_does_not_track_file_count(tmp_path: Path, key: bytes) -> None:
    one = Volume.create(tmp_path / "one", key)
    one.write_bytes("a", b"x")
    many = Volume.create(tmp_path / "many", key)
    with many.update() as change:
        for i in range(20):
            change.write(f"file{i}", io.BytesIO(b"x"))
    sizes = {(v.directory / "manifest").stat().st_size for v in (one, many)}
    assert len(sizes) == 1


def test_write_replace_delete_bump_the_version(tmp_path: Path, key: bytes) -> None:
    volume = Volume.create(tmp_path / "vol", key)
    assert volume.version == 1
    volume.write_bytes("model/weights", b"v1")
    volume.write_bytes("model/weights", b"v2 is longer")
    volume.write_bytes("notes", b"n")
    volume.delete("notes")
    reopened = Volume.open(tmp_path / "vol", key, min_version=5)
    assert reopened.version == 5
    assert reopened.read_bytes("model/weights") == b"v2 is longer"
    assert [(f.path, f.size, f.version) for f in reopened.list()] == [("model/weights", 12, 3)]
    assert len(list((tmp_path / "vol" / BLOBS).iterdir())) == 1  # replaced/deleted blobs gone
    with pytest.raises(NoSuchFileError, match="'notes' is not in the volume"):
        reopened.read_bytes("notes")


def test_failed_change_commits_nothing(tmp_path: Path, key: bytes) -> None:
    volume = Volume.create(tmp_path / "vol", key)
    volume.write_bytes("kept", b"k")
    before = snapshot(tmp_path / "vol")

    def crashing_writer() -> None:
        with volume.update() as change:
            change.write("new", io.BytesIO(b"n"))
            change.delete("kept")
            raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError):
        crashing_writer()
    assert volume.version == 2
    assert snapshot(tmp_path / "vol") == before
    assert Volume.open(tmp_path / "vol", key).read_bytes("kept") == b"k"


def test_stale_writer_is_refused(tmp_path: Path, key: bytes) -> None:
    first = Volume.create(tmp_path / "vol", key)
    second = Volume.open(tmp_path / "vol", key)
    first.write_bytes("a", b"first")
    with pytest.raises(
        ConcurrentUpdateError, match="changed to version 2 since it was opened at 1"
    ):
        second.write_bytes("b", b"second")
    reopened = Volume.open(tmp_path / "vol", key)
    assert [f.path for f in reopened.list()] == ["a"]
    assert len(list((tmp_path / "vol" / BLOBS).iterdir())) == 1


def test_reader_of_a_replaced_file_is_told_to_reopen(tmp_path: Path, key: bytes) -> None:
    Volume.create(tmp_path / "vol", key).write_bytes("a", b"old")
    reader = Volume.open(tmp_path / "vol", key)
    Volume.open(tmp_path / "vol", key).write_bytes("a", b"new")
    with pytest.raises(
        ConcurrentUpdateError, match="changed to version 3 since it was opened at 2"
    ):
        reader.read_bytes("a")
    assert Volume.open(tmp_path / "vol", key).read_bytes("a") == b"new"


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../escape", "a/../b", "a//b", "./a", "", "a\0b", "dir/"],
    ids=["absolute", "dotdot", "inner-dotdot", "empty-part", "dot", "empty", "nul", "trailing"],
)
def test_bad_paths_refused(tmp_path: Path, key: bytes, path: str) -> None:
    volume = Volume.create(tmp_path / "vol", key)
    with pytest.raises(InvalidPathError):
        volume.write_bytes(path, b"x")
    assert volume.version == 1


def test_destinations_are_never_overwritten(tmp_path: Path, key: bytes) -> None:
    src = write_tree(tmp_path / "src")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine").write_bytes(b"do not touch")
    with pytest.raises(DestinationError, match="not an empty directory"):
        transfer.encrypt_dir(src, tmp_path / "busy", key)
    transfer.encrypt_dir(src, tmp_path / "vol", key)
    with pytest.raises(DestinationError, match="not an empty directory"):
        transfer.decrypt_dir(tmp_path / "vol", tmp_path / "busy", key)
    assert snapshot(tmp_path / "busy") == {"mine": b"do not touch"}
    with pytest.raises(DestinationError, match="already holds a volume"):
        Volume.create(tmp_path / "vol", key)


def test_links_are_refused(tmp_path: Path, key: bytes) -> None:
    src = write_tree(tmp_path / "src")
    (src / "link").symlink_to("/etc/hostname")
    with pytest.raises(VolumeError, match="links are refused"):
        transfer.encrypt_dir(src, tmp_path / "vol", key)
    assert not (tmp_path / "vol").exists()


def test_key_file_is_private_and_not_overwritten(tmp_path: Path) -> None:
    key = keys.new_key()
    keys.write_key_file(tmp_path / "k", key)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert keys.read_key_file(tmp_path / "k") == key
    with pytest.raises(FileExistsError):
        keys.write_key_file(tmp_path / "k", keys.new_key())
    (tmp_path / "raw").write_bytes(key)  # as the ACS releases it
    assert keys.read_key_file(tmp_path / "raw") == key
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(VolumeError, match="not a volume key"):
        keys.read_key_file(tmp_path / "bad")


def test_interrupted_blob_write_leaves_nothing(tmp_path: Path, key: bytes) -> None:
    class FailingSource(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= CHUNK:
                raise OSError("disk went away")
            return super().read(size)

    volume = Volume.create(tmp_path / "vol", key, chunk_size=CHUNK)
    with pytest.raises(OSError, match="disk went away"):
        volume.write_stream("big", FailingSource(bytes(3 * CHUNK)))
    assert list((tmp_path / "vol" / BLOBS).iterdir()) == []
    assert Volume.open(tmp_path / "vol", key).version == 1


def test_short_key_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="a volume key is 32 bytes, got 16"):
        Volume.create(tmp_path / "vol", bytes(16))
    assert not (tmp_path / "vol").exists()


@pytest.mark.parametrize("chunk_size", [0, 100, 1 << 30])
def test_unreasonable_chunk_sizes_refused(tmp_path: Path, key: bytes, chunk_size: int) -> None:
    with pytest.raises(VolumeError, match="chunk size"):
        Volume.create(tmp_path / "vol", key, chunk_size)
    assert not (tmp_path / "vol").exists()
