"""`s3mlctl volume`: exit codes, one-line messages, and nothing written on failure."""

from __future__ import annotations

import fcntl
import os
import pty
import stat
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from services.cli.s3mlctl import main
from tests.volume.fixtures import TREE, blob_of, read_tree, snapshot, write_tree


def _encrypt(tmp_path: Path, *extra: str) -> int:
    src = write_tree(tmp_path / "src")
    key = str(tmp_path / "vol.key")
    return main(["volume", "encrypt", str(src), str(tmp_path / "vol"), "--key-file", key, *extra])


def _key(tmp_path: Path) -> list[str]:
    return ["--key-file", str(tmp_path / "vol.key")]


def test_encrypt_ls_decrypt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _encrypt(tmp_path, "--new-key", "--chunk-kib", "1") == 0
    out = capsys.readouterr().out
    assert f"encrypted {len(TREE)} files" in out
    assert "version 2" in out
    assert stat.S_IMODE((tmp_path / "vol.key").stat().st_mode) == 0o600

    assert main(["volume", "ls", str(tmp_path / "vol"), *_key(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "version 2" in listing.splitlines()[0]
    assert "             0  v2      empty" in listing
    assert "         5,137  v2      weights/layer0.bin" in listing
    assert f"{len(TREE)} files" in listing

    out_dir = tmp_path / "plain"
    assert main(["volume", "decrypt", str(tmp_path / "vol"), str(out_dir), *_key(tmp_path)]) == 0
    assert "version 2" in capsys.readouterr().out
    assert read_tree(out_dir) == TREE
    key = bytes.fromhex((tmp_path / "vol.key").read_text())
    assert blob_of(tmp_path / "vol", key, "empty").stat().st_size == 8 + 1024 + 16


def test_bad_chunk_size_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _encrypt(tmp_path, "--new-key", "--chunk-kib", "0") == 1
    assert "chunk size 0 is outside" in capsys.readouterr().err
    assert not (tmp_path / "vol").exists()
    assert not (tmp_path / "vol.key").exists()


def test_new_key_never_overwrites_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vol.key").write_text("precious")
    assert _encrypt(tmp_path, "--new-key") == 1
    assert "refusing to overwrite a key" in capsys.readouterr().err
    assert (tmp_path / "vol.key").read_text() == "precious"
    assert not (tmp_path / "vol").exists()


def test_failed_encrypt_leaves_no_key_and_no_volume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path / "src")
    (tmp_path / "src" / "link").symlink_to("/etc/hostname")
    assert _encrypt(tmp_path, "--new-key") == 1
    assert "links are refused" in capsys.readouterr().err
    assert not (tmp_path / "vol.key").exists()
    assert not (tmp_path / "vol").exists()


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("flip", [], "file 'README.txt': chunk 0 of 1 failed authentication"),
        ("delete", [], "file 'README.txt': its blob is missing"),
        ("none", ["--min-version", "7"], "version 2 is older than the 7 last seen"),
        ("wrong-key", [], "not this volume's key"),
    ],
    ids=["tampered", "deleted", "rolled-back", "wrong-key"],
)
def test_decrypt_refuses_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, extra: list[str], message: str
) -> None:
    assert _encrypt(tmp_path, "--new-key") == 0
    key = bytes.fromhex((tmp_path / "vol.key").read_text())
    blob = blob_of(tmp_path / "vol", key, "README.txt")
    if setup == "flip":
        blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    elif setup == "delete":
        blob.unlink()
    elif setup == "wrong-key":
        (tmp_path / "vol.key").unlink()
        (tmp_path / "vol.key").write_bytes(os.urandom(32))
    capsys.readouterr()
    out_dir = tmp_path / "plain"
    argv = ["volume", "decrypt", str(tmp_path / "vol"), str(out_dir), *_key(tmp_path), *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("s3mlctl: volume: ")
    assert message in err
    assert err.count("\n") == 1
    assert not out_dir.exists()


def test_missing_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["volume", "ls", str(tmp_path / "empty"), *_key(tmp_path)]) == 1
    assert "vol.key: No such file or directory" in capsys.readouterr().err
    (tmp_path / "vol.key").write_bytes(os.urandom(32))
    assert main(["volume", "ls", str(tmp_path / "empty"), *_key(tmp_path)]) == 1
    assert "no volume here (no manifest)" in capsys.readouterr().err


def test_decrypt_into_a_used_directory_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _encrypt(tmp_path, "--new-key") == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine").write_text("keep")
    assert main(["volume", "decrypt", str(tmp_path / "vol"), str(busy), *_key(tmp_path)]) == 1
    assert "is not an empty directory; nothing was written" in capsys.readouterr().err
    assert snapshot(busy) == {"mine": b"keep"}


def test_as_a_process_no_progress_bar_off_a_terminal(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "services.cli.s3mlctl", "volume"]
    key = ["--key-file", str(tmp_path / "k")]
    ok = subprocess.run(
        [*command, "encrypt", str(src), str(tmp_path / "v"), *key, "--new-key"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    bad = subprocess.run(
        [*command, "decrypt", str(tmp_path / "v"), str(tmp_path / "o"), *key, "--min-version", "9"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.startswith("s3mlctl: volume: ")


def test_progress_bar_on_a_terminal_only_without_quiet(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    base = [sys.executable, "-m", "services.cli.s3mlctl", "volume", "encrypt", str(src)]

    def on_a_terminal(*extra: str) -> str:
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            done = subprocess.run(
                [*base, *extra], stderr=terminal, stdout=subprocess.DEVNULL, env=env,
                check=False, timeout=120,
            )  # fmt: skip
            os.close(terminal)
            assert done.returncode == 0
            return _drain(controller)
        finally:
            os.close(controller)

    shown = on_a_terminal(str(tmp_path / "v1"), "--key-file", str(tmp_path / "k1"), "--new-key")
    assert "encrypt: 100%" in shown
    quiet = [str(tmp_path / "v2"), "--key-file", str(tmp_path / "k2"), "--new-key", "--quiet"]
    assert on_a_terminal(*quiet) == ""


def _drain(fd: int) -> str:
    data = b""
    while True:
        try:
            part = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not part:
            break
        data += part
    return data.decode(errors="replace")
