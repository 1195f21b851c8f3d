"""Serving benchmark: raw TFLite invoke vs s3ml end to end vs MLServer and KServe.

For each of the paper's four models, in one run on this machine:
- raw: one `ai-edge-litert` interpreter (1 thread): invoke p50/p99; invokes/s with
  two interpreters on two threads (the same two cores the servers get);
- s3ml: the model server over attested mTLS (sim platform): sequential p50/p99
  from one client, requests/s from concurrent client processes;
- MLServer and KServe's model server, plaintext gRPC, each with a small custom
  runtime calling the same interpreter (bench/peers, own virtualenvs).
Run: bazel run //bench:serving -- [--seconds 8] [--requests 300] [--clients 4] [--no-peers]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from bench.load import Target, percentile, request, sequential, throughput
from services.model_server import imaging
from services.model_server.zoo import calibration
from tests.attest.acs_harness import running_acs, srcdir
from tests.model_server.harness import (
    MODELS,
    SERVICE,
    ZOO,
    client_credentials,
    metadata,
    model_server_mrenclave,
    register,
    seal_zoo,
    server_args,
)

PEERS = Path(__file__).with_name("peers")


@dataclass(frozen=True)
class Stats:
    p50_ms: float
    p99_ms: float
    per_s: float


def model_input(model: str) -> tuple[np.ndarray, str]:
    spec = metadata(model)["inputs"][0]  # type: ignore[index]
    size, datatype = int(spec["shape"][1]), str(spec["datatype"])
    return imaging.model_input(calibration.photos()["coffee"], size, datatype), datatype


def raw_stats(model: str, count: int, seconds: float) -> Stats:
    data = (ZOO / f"{model}.tflite").read_bytes()
    batch, _ = model_input(model)

    def interpreter() -> Interpreter:
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], batch)
        return it

    one = interpreter()
    for _ in range(20):
        one.invoke()
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        one.invoke()
        latencies.append(time.perf_counter() - start)
    done = [0, 0]
    until = time.perf_counter() + seconds

    def loop(i: int, it: Interpreter) -> None:
        while time.perf_counter() < until:
            it.invoke()
            done[i] += 1

    threads = [threading.Thread(target=loop, args=(i, interpreter())) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Stats(
        percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, sum(done) / seconds
    )


def served_stats(target: Target, model: str, args: argparse.Namespace) -> Stats:
    batch, datatype = model_input(model)
    req = request(model, batch, datatype)
    latencies = sequential(target, req, args.requests)
    rate = throughput(target, req, args.clients, args.seconds)
    return Stats(percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, rate)


def wait_ready(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return line.strip()
    raise RuntimeError(f"{what} exited before it was ready (code {proc.wait()})")


def start_peer(kind: str, port: int) -> subprocess.Popen[str]:
    python = Path("/root/.cache/s3ml-bench") / f"venv-{kind}" / "bin" / "python"
    launcher = PEERS / f"run_{kind}.py"
    cmd = [
        str(python),
        str(launcher),
        "--models-dir",
        str(ZOO),
        "--grpc-port",
        str(port),
        "--http-port",
        str(port + 1),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_s3ml(args: argparse.Namespace) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    with tempfile.TemporaryDirectory() as tmp, running_acs(Path(tmp)) as acs:
        models_dir = Path(tmp) / "models"
        register(acs, seal_zoo(models_dir, MODELS), model_server_mrenclave())
        creds = client_credentials(acs, "bench")
        binary = srcdir() / "services" / "model_server" / "server"
        port = free_port()
        extra = [
            "--pool",
            "1",
            "--threads",
            "1",
            "--workers",
            "16",
            "--max-queue",
            "256",
            "--processes",
            "2",
        ]
        args_ = [
            a.replace("127.0.0.1:0", f"127.0.0.1:{port}")
            for a in server_args(acs, models_dir, MODELS, *extra)
        ]
        proc = subprocess.Popen(
            [str(binary), *args_],
            stdout=subprocess.PIPE,
            stderr=sys.stderr if args.verbose else subprocess.DEVNULL,
            text=True,
        )
        try:
            wait_ready(proc, "model server")
            target = Target(
                f"127.0.0.1:{port}",
                (creds.ca_pem, creds.key_pem, creds.cert_pem),
                f"{SERVICE}.s3ml.local",
            )
            for model in args.models:
                out[model] = served_stats(target, model, args)
                print(
                    f"  s3ml    {model:<24} p50 {out[model].p50_ms:7.2f} ms  p99 {out[model].p99_ms:7.2f} ms  {out[model].per_s:7.1f} req/s",
                    flush=True,
                )
        finally:
            stop(proc)
    return out


def measure_peer(kind: str, args: argparse.Namespace) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    port = free_port()
    proc = start_peer(kind, port)
    try:
        wait_ready(proc, kind)
        target = Target(f"127.0.0.1:{port}", None)
        for model in args.models:
            out[model] = served_stats(target, model, args)
            print(
                f"  {kind:<7} {model:<24} p50 {out[model].p50_ms:7.2f} ms  p99 {out[model].p99_ms:7.2f} ms  {out[model].per_s:7.1f} req/s",
                flush=True,
            )
    finally:
        stop(proc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--no-peers", action="store_true", help="skip MLServer and KServe")
    parser.add_argument("--verbose", action="store_true", help="show the servers' logs")
    args = parser.parse_args()
    print("platform: s3ml on SIMULATED SGX (sim attestation, real mTLS); peers plaintext; 2 cores")
    raw = {}
    for model in args.models:
        raw[model] = raw_stats(model, args.requests, args.seconds)
        print(
            f"  raw     {model:<24} p50 {raw[model].p50_ms:7.2f} ms  p99 {raw[model].p99_ms:7.2f} ms  {raw[model].per_s:7.1f} invokes/s (2 threads)",
            flush=True,
        )
    s3ml = measure_s3ml(args)
    peers: dict[str, dict[str, Stats]] = {}
    if not args.no_peers:
        subprocess.run(["bash", str(PEERS / "setup.sh")], check=True, stdout=sys.stderr)
        for kind in ("mlserver", "kserve"):
            peers[kind] = measure_peer(kind, args)
    figures = []
    for model in args.models:
        r, s = raw[model], s3ml[model]
        figures += [
            f"{model}_raw_p50_ms={r.p50_ms:.3f}", f"{model}_raw_p99_ms={r.p99_ms:.3f}", f"{model}_raw_per_s={r.per_s:.1f}",
            f"{model}_p50_ms={s.p50_ms:.3f}", f"{model}_p99_ms={s.p99_ms:.3f}", f"{model}_tput={s.per_s:.1f}",
            f"{model}_overhead_ms={s.p50_ms - r.p50_ms:.3f}", f"{model}_tput_vs_raw={s.per_s / r.per_s:.3f}",
        ]  # fmt: skip
        for kind, stats in peers.items():
            p = stats[model]
            figures += [
                f"{model}_{kind}_p50_ms={p.p50_ms:.3f}", f"{model}_{kind}_tput={p.per_s:.1f}",
                f"{model}_vs_{kind}_tput={s.per_s / p.per_s:.3f}", f"{model}_vs_{kind}_p50={s.p50_ms / p.p50_ms:.3f}",
            ]  # fmt: skip
    print("RESULT " + " ".join(figures))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
