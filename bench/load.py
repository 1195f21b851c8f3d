"""KServe v2 gRPC load generation shared by the serving benchmarks.

Sequential latency runs in this process; throughput runs in separate client
processes (spawned, so each has its own interpreter lock), all on loopback.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import numpy as np

from bench.proctime import tree_cpu_s
from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Target:
    address: str
    tls: tuple[bytes, bytes, bytes] | None  # (ca, key, cert) for mTLS, None for plaintext
    server_name: str = ""
    pid: int | None = None  # the server's root process, for its CPU time; None if unknown

    def channel(self) -> grpc.Channel:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
        ]
        if self.tls is None:
            return grpc.insecure_channel(self.address, options)
        ca, key, cert = self.tls
        options.append(("grpc.ssl_target_name_override", self.server_name))
        return grpc.secure_channel(
            self.address, grpc.ssl_channel_credentials(ca, key, cert), options
        )


def request(model: str, batch: np.ndarray, datatype: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="image", datatype=datatype, shape=list(batch.shape))
    req.raw_input_contents.append(np.ascontiguousarray(batch).tobytes())
    return req


def reap(proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Waits for `proc` to exit; kills it if it has not within `timeout_s`."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def paired_difference(before: list[float], after: list[float], block: int) -> float:
    """The median over turns of (median of `after`'s block - median of `before`'s block),
    both lists taken in turns of `block` values: each difference spans adjacent seconds,
    so a change of the host's pace between turns cancels out of it."""
    diffs = [
        statistics.median(after[i : i + block]) - statistics.median(before[i : i + block])
        for i in range(0, min(len(before), len(after)), block)
    ]
    return statistics.median(diffs)


@contextmanager
def session(
    target: Target, req: pb.ModelInferRequest, warmup: int = 20
) -> Iterator[Callable[[int], list[float]]]:
    """One warmed-up channel; yields `calls(n)`, the latencies (s) of n back-to-back calls."""
    with target.channel() as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        for _ in range(warmup):
            call(req, timeout=60)

        def calls(count: int) -> list[float]:
            out = []
            for _ in range(count):
                start = time.perf_counter()
                call(req, timeout=60)
                out.append(time.perf_counter() - start)
            return out

        yield calls


@dataclass(frozen=True)
class Throughput:
    per_s: float  # requests completed per second
    client_cpu_ms: float  # CPU the client processes spent per request
    server_cpu_ms: float  # CPU the server's process tree spent per request; NaN if unknown

    @classmethod
    def of(cls, done: int, seconds: float, client_cpu_s: float, server_cpu_s: float) -> Throughput:
        """From `done` calls in a window of `seconds` and the CPU both sides spent in it."""
        per_request_ms = 1e3 / done if done else math.nan
        return cls(done / seconds, client_cpu_s * per_request_ms, server_cpu_s * per_request_ms)


def _client(
    target: Target,
    req_bytes: bytes,
    ready: multiprocessing.Queue[bool],
    window: multiprocessing.Queue[tuple[float, float]],
    out: multiprocessing.Queue[tuple[int, float]],
) -> None:
    req = pb.ModelInferRequest.FromString(req_bytes)
    done, cpu_at_begin = 0, math.nan
    with target.channel() as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        call(req, timeout=60)  # connected, and the server has seen this client
        ready.put(True)
        begin, until = window.get()
        while (now := time.time()) < until:
            if now >= begin and math.isnan(cpu_at_begin):
                cpu_at_begin = time.process_time()
            call(req, timeout=60)
            done += now >= begin
    out.put((done, time.process_time() - cpu_at_begin if done else 0.0))


def _server_cpu_s(target: Target, at: float) -> float:
    time.sleep(max(0.0, at - time.time()))
    return tree_cpu_s(target.pid) if target.pid is not None else math.nan


def server_cpu_in_window(target: Target, begin: float, until: float) -> float:
    """CPU seconds the server's process tree spends from `begin` to `until` (waits for both)."""
    return -_server_cpu_s(target, begin) + _server_cpu_s(target, until)


WARMUP_S = 1.0  # every client is already sending when the measured window opens


def measured_throughput(
    target: Target, req: pb.ModelInferRequest, clients: int, seconds: float
) -> Throughput:
    """Requests/s of `clients` concurrent client processes in `seconds`, and the CPU it took.

    The window opens only once every client is connected: spawning a client takes
    seconds on a loaded machine, and a window opened on a clock could start with
    half of them.
    """
    ctx = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[bool] = ctx.Queue()
    window: multiprocessing.Queue[tuple[float, float]] = ctx.Queue()
    out: multiprocessing.Queue[tuple[int, float]] = ctx.Queue()
    args = (target, req.SerializeToString(), ready, window, out)
    procs = [ctx.Process(target=_client, args=args) for _ in range(clients)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    begin = time.time() + WARMUP_S
    until = begin + seconds
    for _ in procs:
        window.put((begin, until))
    server_cpu = server_cpu_in_window(target, begin, until)
    counts = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    done = sum(n for n, _ in counts)
    return Throughput.of(done, seconds, sum(cpu for _, cpu in counts), server_cpu)


def throughput(target: Target, req: pb.ModelInferRequest, clients: int, seconds: float) -> float:
    """Requests/s completed by `clients` concurrent client processes in `seconds`."""
    return measured_throughput(target, req, clients, seconds).per_s
