"""Serving benchmark: raw TFLite invoke vs s3ml end to end vs MLServer and KServe.

For each of the paper's four models, in one run on this machine:
- raw: one `ai-edge-litert` interpreter (1 thread): invoke p50/p99 back to back, in
  blocks of 20 that take turns with blocks of 20 sequential calls to each server, so every
  latency figure of a round covers the same seconds and the machine's drift cancels out
  of the overhead and the ratios; p50 with the core idle 1 ms between invokes (raw_idle: what a
  request/response server's invoke costs at best); invokes/s with two interpreters on two threads (the
  same two cores the servers get), measured right before and right after s3ml's run and
  averaged (this machine's speed drifts by 10 % from one run to the next);
- s3ml: the model server over attested mTLS (sim platform), native data plane unless
  --plane python: sequential p50/p99 from one client, requests/s from concurrent
  client processes (--also-python adds the Python plane as s3ml_python); its sequential
  p50 also through Debian's gRPC C++ client (`grpcpp_client_overhead_ms`), what a
  client on that library sees;
- echo: a bare sync gRPC server over mTLS answering at once (bench/echo.py), what a
  simple gRPC server costs without inference (and its requests/s the transport ceiling);
- tls_floor: bare TLS round trips on loopback carrying the request's and the reply's
  bytes and nothing else (bench/loadgen/tlsfloor.cc), its server busy for one raw invoke
  (p50) before each answer, so the client's core idles as long as any server's client
  does (waking it after 11 ms costs ~0.3 ms here); minus that busy wait, the floor under any
  TLS server's overhead: overhead_ms = tls_floor_ms + beyond_floor_ms, the latter what
  s3ml's HTTP/2, gRPC, validation and reply (and the client's framing) add;
  overhead_paired_ms is the overhead again as the median over turns of (s3ml's block
  median - the raw block's median): robust to the host changing pace mid-round, which
  moves a round's p50s (once by 2 ms, making overhead_ms negative);
- MLServer and KServe's model server, plaintext gRPC, each with a small custom
  runtime calling the same interpreter (bench/peers, own virtualenvs).
During every requests/s run the bench also reads, from /proc, the CPU each server's
process tree and the client processes spent per request (`*_server_cpu_ms`,
`client_cpu_ms`): clients and servers share the two cores, so `server_tput_vs_raw`
(an invoke's CPU against the s3ml server's CPU per request) says what tput_vs_raw
would be with the clients on other machines.
All servers run at once. Each round takes the latencies in turns (above), then
requests/s of raw and every server back to back, so throughput ratios compare figures
taken seconds apart on a shared, noisy machine.
Figures are medians over the rounds, with the spread (min..max) printed.
The load comes from bench/loadgen (C++) over a bare HTTP/2 gRPC client on nghttp2 and
OpenSSL (--client h2, the default), Debian's gRPC C++ library (--client grpc) or Python
gRPC client processes (--client python); every server in a run gets the same client.
Run: bazel run //bench:serving -- [--rounds 3] [--seconds 5] [--requests 200] [--clients 8]
     [--no-peers] [--plane native|python] [--also-python] [--client h2|grpc|python]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from bench import echo, load, native_load
from bench.load import Target, Throughput, paired_difference, percentile, reap, request
from inference import grpc_predict_v2_pb2 as pb
from services.loopback import ports as loopback
from services.model_server import imaging
from services.model_server.tensor_spec import DTYPES
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


# s3ml's native data plane (the default here): one C++ process, no interpreter lock in the
# request path, one 1-thread interpreter per core. A thread that finishes an invoke runs the
# next queued call on the same interpreter itself, so no core idles through a hand-off and a
# third interpreter gains nothing (EfficientNet-Lite0: the same requests/s with 2 and 3).
# s3ml's Python plane: one process per core on one port (SO_REUSEPORT), one 1-thread
# interpreter per model each. Connections are spread by the kernel's hash, so the clients
# are separate processes (one connection each) and enough of them that both processes get
# work (with 8 clients, one process is left with fewer than 2 in 7 % of runs; with 4, 62 %).
PLANE_ARGS = {
    "native": ("--data-plane", "native", "--processes", "1", "--pool", "2", "--threads", "1",
               "--workers", "16", "--max-queue", "256"),
    "python": ("--data-plane", "python", "--processes", "2", "--pool", "1", "--threads", "1",
               "--workers", "16", "--max-queue", "256"),
}  # fmt: skip
NOT_PEERS = ("s3ml", "echo", "s3ml_alt", "s3ml_python")


Calls = Callable[[int], list[float]]  # latencies (s) of n back-to-back calls on one connection


@dataclass(frozen=True)
class Client:
    session: Callable[[Target, pb.ModelInferRequest], contextlib.AbstractContextManager[Calls]]
    measured_throughput: Callable[[Target, pb.ModelInferRequest, int, float], Throughput]


def _loadgen(transport: native_load.Transport) -> Client:
    return Client(
        partial(native_load.session, transport=transport),
        partial(native_load.measured_throughput, transport=transport),
    )


# Who sends the load: the C++ client (bench/loadgen: it leaves the cores to the servers)
# over bare HTTP/2 (the default) or Debian's gRPC library, or Python gRPC clients (one
# process per connection).
CLIENTS = {
    "h2": _loadgen("h2"),
    "grpc": _loadgen("grpc"),
    "python": Client(load.session, load.measured_throughput),
}


def model_input(model: str) -> tuple[np.ndarray, str]:
    spec = metadata(model)["inputs"][0]  # type: ignore[index]
    size, datatype = int(spec["shape"][1]), str(spec["datatype"])
    return imaging.model_input(calibration.photos()["coffee"], size, datatype), datatype


GRPC_PREFIX_BYTES = 5  # each gRPC message's compressed flag and length


def reply_bytes(model: str) -> int:
    """The gRPC message (5-byte prefix included) a server answers one item of `model` with."""
    meta = metadata(model)
    out = meta["outputs"][0]  # type: ignore[index]
    dims = [int(d) for d in out["shape"][1:]]
    reply = pb.ModelInferResponse(model_name=model, model_version=str(meta["version"]))
    reply.outputs.add(name=str(out["name"]), datatype=str(out["datatype"]), shape=[1, *dims])
    reply.raw_output_contents.append(bytes(math.prod(dims) * DTYPES[str(out["datatype"])].itemsize))
    return reply.ByteSize() + GRPC_PREFIX_BYTES


def _interpreter(model: str) -> Interpreter:
    it = Interpreter(model_content=(ZOO / f"{model}.tflite").read_bytes(), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], model_input(model)[0])
    for _ in range(5):
        it.invoke()
    return it


def _invokes(one: Interpreter, count: int, pause_s: float = 0.0) -> list[float]:
    out = []
    for _ in range(count):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter()
        one.invoke()
        out.append(time.perf_counter() - start)
    return out


def raw_latency(model: str, count: int, pause_s: float = 0.0) -> list[float]:
    """Invoke latencies; `pause_s` idles the core between invokes, as a request/response
    server's core idles while the answer travels and the next request arrives (caches
    and the core's clock go cold: the invoke itself gets slower, for every server)."""
    return _invokes(_interpreter(model), count, pause_s)


BLOCK = 20  # calls (and invokes) per turn; a turn's first call follows an idle server


def interleaved_latency(
    model: str, sessions: dict[str, Calls], count: int
) -> dict[str, list[float]]:
    """Latencies of raw invokes ("raw") and of each server's sequential calls, in blocks
    that take turns over the same seconds. This machine's invoke time wanders by 10-50 %
    from one second to the next (other tenants), so p50s taken seconds apart would put
    that drift into the overhead and into every ratio; taking turns, all see the same
    machine."""
    one = _interpreter(model)
    got: dict[str, list[float]] = {"raw": [], **{name: [] for name in sessions}}
    while len(got["raw"]) < count:
        n = min(BLOCK, count - len(got["raw"]))
        got["raw"] += _invokes(one, n)
        for name, calls in sessions.items():
            got[name] += calls(n)
    return got


RAW_THREADS = 2  # the machine's cores


def raw_throughput(model: str, seconds: float) -> float:
    """Invokes/s of two interpreters on two threads (invoke releases the GIL)."""
    interpreters = [_interpreter(model) for _ in range(RAW_THREADS)]
    done = [0] * RAW_THREADS
    until = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < until:
            interpreters[i].invoke()
            done[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(RAW_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def wait_ready(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return line.strip()
    raise RuntimeError(f"{what} exited before it was ready (code {proc.wait()})")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    reap(proc, 30)


@contextlib.contextmanager
def running(
    cmd: list[str], what: str, verbose: bool, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Runs a server that prints `READY ...` once it serves; yields its pid."""
    stderr = sys.stderr if verbose else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        wait_ready(proc, what)
        yield proc.pid
    finally:
        stop(proc)


@contextlib.contextmanager
def s3ml_server(args: argparse.Namespace, settings: tuple[str, ...]) -> Iterator[Target]:
    with tempfile.TemporaryDirectory() as tmp, running_acs(Path(tmp)) as acs:
        models_dir = Path(tmp) / "models"
        register(acs, seal_zoo(models_dir, MODELS), model_server_mrenclave())
        creds = client_credentials(acs, "bench")
        port = loopback.kernel_port()
        argv = [
            a.replace("127.0.0.1:0", f"127.0.0.1:{port}")
            for a in server_args(acs, models_dir, MODELS, *settings)
        ]
        binary = srcdir() / "services" / "model_server" / "server"
        with running([str(binary), *argv], "model server", args.verbose) as pid:
            yield Target(
                f"127.0.0.1:{port}",
                (creds.ca_pem, creds.key_pem, creds.cert_pem),
                f"{SERVICE}.s3ml.local",
                pid,
            )


def venv_environment() -> dict[str, str]:
    """Our environment without the PYTHONPATH `bazel run` sets: a peer's virtualenv must
    see only its own packages (with ours first on sys.path, its pip skipped whatever we
    already had, and its servers ran on our numpy and grpcio)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@contextlib.contextmanager
def peer_server(kind: str, args: argparse.Namespace) -> Iterator[Target]:
    python = Path("/root/.cache/s3ml-bench") / f"venv-{kind}" / "bin" / "python"
    port = loopback.kernel_port()
    cmd = [str(python), str(PEERS / f"run_{kind}.py"), "--models-dir", str(ZOO),
           "--grpc-port", str(port), "--http-port", str(port + 1)]  # fmt: skip
    with running(cmd, kind, args.verbose, venv_environment()) as pid:
        yield Target(f"127.0.0.1:{port}", None, pid=pid)


@contextlib.contextmanager
def echo_server() -> Iterator[Target]:
    pki = echo.make_pki()
    proc, port = echo.start(pki)
    try:
        yield Target(f"127.0.0.1:{port}", (pki.ca_pem, *pki.client), echo.SERVER_NAME, proc.pid)
    finally:
        proc.terminate()
        proc.join(30)


@contextlib.contextmanager
def all_servers(args: argparse.Namespace) -> Iterator[dict[str, Target]]:
    """Every server up at once, so each round can measure them back to back."""
    with contextlib.ExitStack() as stack:
        settings = PLANE_ARGS[args.plane]
        targets = {"s3ml": stack.enter_context(s3ml_server(args, settings))}
        if args.alt:  # an A/B of server settings, measured in the same rounds
            alt = (*settings, *args.alt.split())
            targets["s3ml_alt"] = stack.enter_context(s3ml_server(args, alt))
        if args.also_python and args.plane != "python":
            python = stack.enter_context(s3ml_server(args, PLANE_ARGS["python"]))
            targets["s3ml_python"] = python
        targets["echo"] = stack.enter_context(echo_server())
        if not args.no_peers:
            setup = ["bash", str(PEERS / "setup.sh")]
            subprocess.run(setup, check=True, stdout=sys.stderr, env=venv_environment())
            for kind in ("mlserver", "kserve"):
                targets[kind] = stack.enter_context(peer_server(kind, args))
        yield targets


Samples = dict[str, list[float]]  # figure name -> one value per round
IDLE_PAUSE_S = 0.001  # about one sequential round trip of the echo server here


def one_round(model: str, targets: dict[str, Target], args: argparse.Namespace) -> dict[str, float]:
    """Latencies of raw and every server in turns, then requests/s back to back."""
    batch, datatype = model_input(model)
    req = request(model, batch, datatype)
    client = CLIENTS[args.client]
    with contextlib.ExitStack() as stack:  # one connection per server, kept for all turns
        sessions = {
            name: stack.enter_context(client.session(t, req)) for name, t in targets.items()
        }
        if args.client != "grpc":  # what a client on Debian's gRPC C++ library sees
            grpcpp = CLIENTS["grpc"].session(targets["s3ml"], req)
            sessions["s3ml_grpcpp"] = stack.enter_context(grpcpp)
        latencies = interleaved_latency(model, sessions, args.requests)
    got: dict[str, float] = {}
    for name, values in latencies.items():
        got[f"{name}_p50"] = percentile(values, 0.5) * 1e3
        got[f"{name}_p99"] = percentile(values, 0.99) * 1e3
    got["overhead_paired_ms"] = paired_difference(latencies["raw"], latencies["s3ml"], BLOCK) * 1e3
    got["raw_idle_p50"] = percentile(raw_latency(model, args.requests, IDLE_PAUSE_S), 0.5) * 1e3
    busy_s = percentile(latencies["raw"], 0.5)
    floor = native_load.tls_floor(
        req.ByteSize() + GRPC_PREFIX_BYTES, reply_bytes(model), args.requests, busy_s=busy_s
    )
    got["tls_floor_busy"] = busy_s * 1e3
    got["tls_floor_p50"] = percentile(floor, 0.5) * 1e3  # its busy wait included
    raw = [raw_throughput(model, args.seconds)]
    for name, target in targets.items():
        run = client.measured_throughput(target, req, args.clients, args.seconds)
        got[f"{name}_tput"] = run.per_s
        got[f"{name}_server_cpu_ms"] = run.server_cpu_ms
        got[f"{name}_client_cpu_ms"] = run.client_cpu_ms
        if name == "s3ml":  # raw again: the reference brackets s3ml's run, as the machine drifts
            raw.append(raw_throughput(model, args.seconds))
    got["raw_tput"] = statistics.mean(raw)
    return got


def ratio(a: float, b: float) -> float:
    """a/b; NaN when b is 0 (e.g. a peer that served nothing in that round), left out of medians."""
    return a / b if b else math.nan


def derived(got: dict[str, float], peers: list[str]) -> dict[str, float]:
    """Per-round ratios: each compares figures of the same round."""
    # An invoke's share of the raw run's cores, in ms of CPU.
    invoke_cpu_ms = ratio(RAW_THREADS * 1e3, got["raw_tput"])
    overhead_ms = got["s3ml_p50"] - got["raw_p50"]  # taken over the same seconds
    # The floor's server spins for exactly `tls_floor_busy`: the rest is moving the bytes.
    tls_floor_ms = got["tls_floor_p50"] - got["tls_floor_busy"]
    out = {
        "overhead_ms": overhead_ms,
        "idle_invoke_ms": got["raw_idle_p50"] - got["raw_p50"],
        "tls_floor_ms": tls_floor_ms,
        "beyond_floor_ms": overhead_ms - tls_floor_ms,
        "echo_ms": got["echo_p50"],
        "echo_tput_vs_raw": ratio(got["echo_tput"], got["raw_tput"]),
        "tput_vs_raw": ratio(got["s3ml_tput"], got["raw_tput"]),
        "invoke_cpu_ms": invoke_cpu_ms,
        # An invoke's CPU against the server's own CPU per request under load: what
        # tput_vs_raw would be with the clients on other machines.
        "server_tput_vs_raw": ratio(invoke_cpu_ms, got["s3ml_server_cpu_ms"]),
    }
    for kind in peers:
        out[f"vs_{kind}_tput"] = ratio(got["s3ml_tput"], got[f"{kind}_tput"])
        out[f"vs_{kind}_p50"] = ratio(got["s3ml_p50"], got[f"{kind}_p50"])
    if "s3ml_grpcpp_p50" in got:
        out["grpcpp_client_overhead_ms"] = got["s3ml_grpcpp_p50"] - got["raw_p50"]
    if "s3ml_python_p50" in got:  # the Python plane, side by side
        out["python_plane_overhead_ms"] = got["s3ml_python_p50"] - got["raw_p50"]
        out["python_plane_tput_vs_raw"] = ratio(got["s3ml_python_tput"], got["raw_tput"])
    return out


def finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)] or [math.nan]


def spread(values: list[float]) -> str:
    values = finite(values)
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def measure(model: str, targets: dict[str, Target], args: argparse.Namespace) -> Samples:
    samples: Samples = defaultdict(list)
    peers = [k for k in targets if k not in NOT_PEERS]
    for i in range(args.rounds):
        got = one_round(model, targets, args)
        got.update(derived(got, peers))
        for key, value in got.items():
            samples[key].append(value)
        print(f"  {model} round {i + 1}: " + " ".join(f"{k}={v:.2f}" for k, v in got.items()),
              flush=True)  # fmt: skip
    for key in (
        "overhead_ms",
        "overhead_paired_ms",
        "tls_floor_ms",
        "beyond_floor_ms",
        "grpcpp_client_overhead_ms",
        "echo_ms",
        "idle_invoke_ms",
        "tput_vs_raw",
        "echo_tput_vs_raw",
        "server_tput_vs_raw",
        *(f"vs_{k}_tput" for k in peers),
    ):
        if key in samples:
            print(f"  {model:<24} {key:<16} median [min..max] {spread(samples[key])}", flush=True)
    return samples


RESULT_KEYS = {  # RESULT name -> round figure; medians over the rounds
    "raw_p50_ms": "raw_p50", "raw_p99_ms": "raw_p99", "raw_per_s": "raw_tput",
    "raw_idle_p50_ms": "raw_idle_p50",
    "p50_ms": "s3ml_p50", "p99_ms": "s3ml_p99", "tput": "s3ml_tput", "echo_p50_ms": "echo_p50",
    "echo_tput": "echo_tput",
    "overhead_ms": "overhead_ms", "overhead_paired_ms": "overhead_paired_ms", "tls_floor_ms": "tls_floor_ms", "beyond_floor_ms": "beyond_floor_ms",
    "tput_vs_raw": "tput_vs_raw",
    "invoke_cpu_ms": "invoke_cpu_ms", "server_cpu_ms": "s3ml_server_cpu_ms",
    "client_cpu_ms": "s3ml_client_cpu_ms", "echo_server_cpu_ms": "echo_server_cpu_ms",
    "server_tput_vs_raw": "server_tput_vs_raw",
}  # fmt: skip


def result_line(results: dict[str, Samples], peers: list[str]) -> str:
    figures = []
    for model, samples in results.items():
        med = {k: statistics.median(finite(v)) for k, v in samples.items()}
        figures += [f"{model}_{name}={med[key]:.3f}" for name, key in RESULT_KEYS.items()]
        figures += [
            f"{model}_overhead_ms_min={min(finite(samples['overhead_ms'])):.3f}",
            f"{model}_overhead_ms_max={max(finite(samples['overhead_ms'])):.3f}",
            f"{model}_tput_vs_raw_min={min(finite(samples['tput_vs_raw'])):.3f}",
            f"{model}_tput_vs_raw_max={max(finite(samples['tput_vs_raw'])):.3f}",
        ]
        figures += [
            f"{model}_{name}={med[name]:.3f}"
            for name in (
                "grpcpp_client_overhead_ms",
                "python_plane_overhead_ms",
                "python_plane_tput_vs_raw",
            )
            if name in med
        ]
        for kind in peers:
            figures += [
                f"{model}_{kind}_p50_ms={med[f'{kind}_p50']:.3f}", f"{model}_{kind}_tput={med[f'{kind}_tput']:.1f}",
                f"{model}_vs_{kind}_tput={med[f'vs_{kind}_tput']:.3f}", f"{model}_vs_{kind}_p50={med[f'vs_{kind}_p50']:.3f}",
                f"{model}_{kind}_server_cpu_ms={med[f'{kind}_server_cpu_ms']:.3f}",
            ]  # fmt: skip
    return "RESULT " + " ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--no-peers", action="store_true", help="skip MLServer and KServe")
    parser.add_argument("--alt", default="", help="also serve s3ml with these extra arguments")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="h2",
                        help="load generator: C++ threads (bare HTTP/2 or gRPC C++) or Python processes")  # fmt: skip
    parser.add_argument("--plane", choices=sorted(PLANE_ARGS), default="native",
                        help="the s3ml data plane measured as s3ml")  # fmt: skip
    parser.add_argument("--also-python", action="store_true",
                        help="also measure the Python plane (s3ml_python) in the same rounds")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="show the servers' logs")
    args = parser.parse_args()
    print("platform: s3ml on SIMULATED SGX (sim attestation, real mTLS); peers plaintext; 2 cores")
    results: dict[str, Samples] = {}
    with all_servers(args) as targets:
        for model in args.models:
            results[model] = measure(model, targets, args)
        peers = [k for k in targets if k not in NOT_PEERS]
    print(result_line(results, peers))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
