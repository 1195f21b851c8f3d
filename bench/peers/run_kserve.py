#!/usr/bin/env python3
"""Serve every <name>.tflite (+ <name>.json) in --models-dir with KServe's ModelServer.

Run with the KServe venv's interpreter (setup.sh creates it):
  /root/.cache/s3ml-bench/venv-kserve/bin/python bench/peers/run_kserve.py \
      --models-dir bazel-bin/services/model_server/zoo --grpc-port 9201 --http-port 9202

Starts kserve_model.py (same interpreter) as a child, prints READY once gRPC
ServerReady and ModelReady(all models) answer true, and forwards SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _launch import discover, supervise  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models-dir", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument(
        "--num-threads", type=int, default=1, help="TFLite interpreter threads (default 1)"
    )
    a = p.parse_args()
    names = [m[0] for m in discover(a.models_dir)]
    cmd = [
        sys.executable,
        os.path.join(HERE, "kserve_model.py"),
        "--models-dir",
        a.models_dir,
        "--grpc-port",
        str(a.grpc_port),
        "--http-port",
        str(a.http_port),
        "--num-threads",
        str(a.num_threads),
    ]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return supervise(cmd, a.grpc_port, names)


if __name__ == "__main__":
    sys.exit(main())
