"""Entry point of every Python test target: runs pytest on the target's files."""

from __future__ import annotations

import os
import sys

import pytest

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a.endswith(".py")]
    extra = [a for a in sys.argv[1:] if not a.endswith(".py")]
    junit = os.environ.get("XML_OUTPUT_FILE")
    opts = ["-p", "no:cacheprovider", "-q", "-ra"]
    if junit:
        opts.append(f"--junitxml={junit}")
    # pytest exits 5 when it collected nothing: a test target that tests
    # nothing is a failure, which pytest's non-zero code already reports.
    sys.exit(pytest.main([*opts, *extra, *args]))
