"""Runs ruff or `mypy --strict` on the files Bazel hands over; fails on any finding.

Generated protobuf stubs reach mypy through the import path Bazel builds for
this test, so they are type information, never checked code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = "pyproject.toml"


def run_ruff(files: list[str]) -> int:
    from ruff.__main__ import find_ruff_bin  # noqa: PLC0415  (only this branch needs it)

    ruff = find_ruff_bin()
    checks = [
        [ruff, "check", "--no-cache", "--config", CONFIG, *files],
        [ruff, "format", "--check", "--no-cache", "--config", CONFIG, *files],
    ]
    return max(subprocess.run(cmd, check=False).returncode for cmd in checks)


def run_mypy(files: list[str]) -> int:
    from mypy import api  # noqa: PLC0415

    # Directories on sys.path that hold our generated stubs: the workspace
    # root and the proto root, which Bazel put there for the deps.
    own = [p for p in sys.path if Path(p, "s3ml").is_dir() or Path(p, "inference").is_dir()]
    os.environ["MYPYPATH"] = os.pathsep.join(own)
    stdout, stderr, status = api.run(
        ["--config-file", CONFIG, "--no-incremental", "--cache-dir", os.devnull, *files]
    )
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return status


def main() -> int:
    tool, files = sys.argv[1], sys.argv[2:]
    if not files:
        print("no files to check", file=sys.stderr)
        return 1
    return run_ruff(files) if tool == "ruff" else run_mypy(files)


if __name__ == "__main__":
    sys.exit(main())
