"""Renders a Gramine manifest template and writes its sim MRENCLAVE (hex).

Run by the `gramine_manifest` rule with `uri=path` pairs: the URI a file has
inside the enclave, and where the build action can read it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.attest.measurement import render_manifest, sim_mrenclave_with


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--manifest-out", type=Path, required=True)
    parser.add_argument("--mrenclave-out", type=Path, required=True)
    parser.add_argument("files", nargs="*", help="uri=path")
    args = parser.parse_args()
    trusted = {uri: Path(path) for uri, _, path in (f.partition("=") for f in args.files)}
    manifest = render_manifest(args.template.read_text(), trusted)
    args.manifest_out.write_text(manifest)
    mrenclave = sim_mrenclave_with(manifest, lambda uri: trusted[uri])
    args.mrenclave_out.write_text(mrenclave.hex() + "\n")


if __name__ == "__main__":
    main()
