"""`s3mlctl volume encrypt|decrypt|ls`: encrypted volumes from the command line.

Failures print one line naming the file and the fault, exit 1, and leave the
destination untouched (the library stages its output).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

from services.volume import keys, transfer
from services.volume.blob import Progress
from services.volume.errors import VolumeError
from services.volume.manifest import DEFAULT_CHUNK
from services.volume.volume import Volume

Handler = Callable[[argparse.Namespace], int]


def _reporting(func: Handler) -> Handler:
    """One line on stderr and exit status 1 for every expected failure."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except VolumeError as err:
            print(f"s3mlctl: volume: {err}", file=sys.stderr)
        except OSError as err:
            reason = f"{err.filename}: {err.strerror}" if err.filename else str(err)
            print(f"s3mlctl: volume: {reason}", file=sys.stderr)
        return 1

    return run


@contextmanager
def _progress(total: int, what: str, quiet: bool) -> Iterator[Progress]:
    """A byte progress bar on stderr, only for a terminal and without --quiet."""
    disable = quiet or not sys.stderr.isatty()
    with tqdm(
        total=total, desc=what, unit="B", unit_scale=True, file=sys.stderr, disable=disable
    ) as bar:
        yield bar.update


def _size(n: int) -> str:
    return f"{n:,} bytes"


@_reporting
def cmd_encrypt(args: argparse.Namespace) -> int:
    key_file: Path = args.key_file
    if args.new_key:
        key = keys.new_key()
        try:
            keys.write_key_file(key_file, key)
        except FileExistsError as err:
            raise VolumeError(f"{key_file} exists; refusing to overwrite a key") from err
    else:
        key = keys.read_key_file(key_file)
    try:
        total = sum(f.size for f in transfer.scan(args.src))
        with _progress(total, "encrypt", args.quiet) as progress:
            volume = transfer.encrypt_dir(
                args.src, args.volume, key, progress, args.chunk_kib * 1024
            )
    except BaseException:
        if args.new_key:
            key_file.unlink(missing_ok=True)
        raise
    files = volume.list()
    print(
        f"encrypted {len(files)} files ({_size(total)}) into {args.volume}: version "
        f"{volume.version}; keep it as --min-version to detect a rollback"
    )
    if args.new_key:
        print(f"new key in {key_file} (mode 0600): whoever holds it can read the volume")
    return 0


@_reporting
def cmd_decrypt(args: argparse.Namespace) -> int:
    key = keys.read_key_file(args.key_file)
    volume = Volume.open(args.volume, key, args.min_version)
    total = sum(f.size for f in volume.list())
    with _progress(total, "decrypt", args.quiet) as progress:
        files = transfer.decrypt_volume(volume, args.out, progress)
    print(
        f"decrypted {len(files)} files ({_size(total)}) of {args.volume} "
        f"(version {volume.version}) into {args.out}"
    )
    return 0


@_reporting
def cmd_ls(args: argparse.Namespace) -> int:
    volume = Volume.open(args.volume, keys.read_key_file(args.key_file), args.min_version)
    files = volume.list()
    print(f"volume {volume.volume_id.hex()} version {volume.version}")
    for info in files:
        print(f"{info.size:>14,}  v{info.version:<6} {info.path}")
    print(f"{len(files)} files, {_size(sum(f.size for f in files))}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `volume encrypt|decrypt|ls` to the s3mlctl parser."""
    volume = sub.add_parser("volume", help="encrypted volumes (files, sizes and names hidden)")
    commands = volume.add_subparsers(dest="volume", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--key-file", type=Path, required=True, help="the volume key")

    def versioned(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--min-version", type=int, help="refuse a volume older than this (rollback anchor)"
        )

    encrypt = commands.add_parser("encrypt", help="encrypt a directory into a new volume")
    encrypt.add_argument("src", type=Path, metavar="SRC_DIR")
    encrypt.add_argument("volume", type=Path, metavar="VOLUME_DIR")
    common(encrypt)
    encrypt.add_argument("--new-key", action="store_true", help="generate the key into --key-file")
    encrypt.add_argument(
        "--chunk-kib",
        type=int,
        default=DEFAULT_CHUNK // 1024,
        help="chunk size in KiB; every file's size shows only rounded up to it (default 64)",
    )
    encrypt.add_argument("--quiet", action="store_true", help="no progress bar")
    encrypt.set_defaults(func=cmd_encrypt)

    decrypt = commands.add_parser("decrypt", help="decrypt a whole volume into a new directory")
    decrypt.add_argument("volume", type=Path, metavar="VOLUME_DIR")
    decrypt.add_argument("out", type=Path, metavar="OUT_DIR")
    common(decrypt)
    versioned(decrypt)
    decrypt.add_argument("--quiet", action="store_true", help="no progress bar")
    decrypt.set_defaults(func=cmd_decrypt)

    ls = commands.add_parser("ls", help="list paths, sizes and the volume version")
    ls.add_argument("volume", type=Path, metavar="VOLUME_DIR")
    common(ls)
    versioned(ls)
    ls.set_defaults(func=cmd_ls)
