#!/usr/bin/env python3
"""Serve every <name>.tflite (+ <name>.json) in --models-dir with MLServer.

Run with the MLServer venv's interpreter (setup.sh creates it):
  /root/.cache/s3ml-bench/venv-mlserver/bin/python bench/peers/run_mlserver.py \
      --models-dir bazel-bin/services/model_server/zoo --grpc-port 9101 --http-port 9102

Writes settings.json and one model-settings.json per model into a temp dir,
starts `mlserver start <tmpdir>` (from the same venv) as a child, prints READY
once gRPC ServerReady and ModelReady(all models) answer true, and forwards
SIGTERM/SIGINT. The temp dir is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _launch import discover, supervise  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models-dir", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="Prometheus metrics port (default: http-port + 1)",
    )
    p.add_argument(
        "--parallel-workers",
        type=int,
        default=1,
        help="MLServer inference worker processes (MLServer default 1; 0 = run in the server process)",
    )
    p.add_argument(
        "--num-threads", type=int, default=1, help="TFLite interpreter threads (default 1)"
    )
    p.add_argument(
        "--debug", action="store_true", help="MLServer debug mode (per-request access logs)"
    )
    a = p.parse_args()

    models = discover(a.models_dir)
    root = tempfile.mkdtemp(prefix="s3ml-mlserver-")
    settings = {
        "debug": a.debug,
        "host": "127.0.0.1",
        "http_port": a.http_port,
        "grpc_port": a.grpc_port,
        "metrics_port": a.metrics_port or _free_port(),
        "parallel_workers": a.parallel_workers,
        "load_models_at_startup": True,
        "model_repository_root": root,
        "environments_dir": os.path.join(root, ".envs"),
        "metrics_dir": os.path.join(root, ".metrics"),
    }
    with open(os.path.join(root, "settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
    for name, tflite, meta_path in models:
        with open(meta_path) as f:
            meta = json.load(f)
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "model-settings.json"), "w") as f:
            json.dump(
                {
                    "name": name,
                    "implementation": "mlserver_runtime.TFLiteRuntime",
                    "platform": "tflite",
                    "inputs": meta["inputs"],
                    "outputs": meta["outputs"],
                    "parameters": {
                        "uri": tflite,
                        "version": str(meta.get("version", "1")),
                        "extra": {"metadata": meta_path, "num_threads": a.num_threads},
                    },
                },
                f,
                indent=2,
            )

    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    mlserver = os.path.join(os.path.dirname(sys.executable), "mlserver")
    cmd = [mlserver, "start", root]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    os.makedirs(settings["metrics_dir"], exist_ok=True)
    old = os.getcwd()
    os.chdir(root)  # MLServer writes a few files relative to the cwd
    try:
        return supervise(
            cmd,
            a.grpc_port,
            [m[0] for m in models],
            env=env,
            cleanup=lambda: shutil.rmtree(root, ignore_errors=True),
        )
    finally:
        os.chdir(old)


if __name__ == "__main__":
    sys.exit(main())
