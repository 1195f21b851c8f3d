"""Open-loop load that records every request's arrival time and latency.

Requests arrive as a Poisson process at a fixed rate, whatever the servers do
(a steady client population, as in the paper), and latency is measured from
the planned arrival, so a backlog shows up in the numbers instead of slowing
the load (no coordinated omission).

Each client process opens a NEW connection (own TLS handshake) per request:
HAProxy balances in TCP mode, per connection, as IPVS does in the paper, so a
long-lived HTTP/2 connection would pin a client to one replica and no policy
(round robin, least connections, weights) could act. The handshake is part
of every measured latency, for every policy alike.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from bench.load import Target
from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc

REQUEST_TIMEOUT_S = 15.0
MAX_IN_FLIGHT = 64  # per client process; more would only queue in the replicas


@dataclass(frozen=True)
class Sample:
    start: float  # planned arrival, seconds since the run's t0
    latency_s: float  # from the planned arrival to the answer
    ok: bool


def _fresh_channel(target: Target) -> grpc.Channel:
    assert target.tls is not None
    ca, key, cert = target.tls
    options: list[tuple[str, int | str]] = [
        ("grpc.ssl_target_name_override", target.server_name),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.use_local_subchannel_pool", 1),  # never reuse another channel's connection
    ]
    return grpc.secure_channel(target.address, grpc.ssl_channel_credentials(ca, key, cert), options)


def one_request(target: Target, req: pb.ModelInferRequest) -> bool:
    with _fresh_channel(target) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=REQUEST_TIMEOUT_S)
        except grpc.RpcError:
            return False
    return True


def _client(
    target: Target,
    req_bytes: bytes,
    rate: float,
    seed: int,
    seconds: float,
    ready: multiprocessing.Queue[float],
    go: multiprocessing.Queue[float],
    out: multiprocessing.Queue[list[tuple[float, float, bool]]],
) -> None:
    req = pb.ModelInferRequest.FromString(req_bytes)
    rng = random.Random(seed)  # noqa: S311  (arrival times, not secrets)
    samples: list[tuple[float, float, bool]] = []

    def send(planned: float) -> None:
        ok = one_request(target, req)
        samples.append((planned - t0, time.time() - planned, ok))  # list.append is atomic

    one_request(target, req)  # gRPC and TLS initialise on the first call: not part of the run
    ready.put(time.time())
    t0 = go.get()  # every client is up: arrivals planned before that would count start-up
    until = t0 + seconds
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
        planned = t0 + rng.expovariate(rate)
        while planned < until:
            time.sleep(max(0.0, planned - time.time()))
            pool.submit(send, planned)
            planned += rng.expovariate(rate)
    out.put(samples)


class OpenLoop:
    """Poisson arrivals at `rate` req/s from `processes` client processes for `seconds`.

    start() returns once every client process is up, at t0 (wall clock), when arrivals begin.
    """

    def __init__(
        self,
        target: Target,
        req: pb.ModelInferRequest,
        rate: float,
        seconds: float,
        processes: int = 2,
        seed: int = 1,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready: multiprocessing.Queue[float] = ctx.Queue()
        self._go: multiprocessing.Queue[float] = ctx.Queue()
        self._out: multiprocessing.Queue[list[tuple[float, float, bool]]] = ctx.Queue()
        self.t0 = 0.0
        self.seconds = seconds
        self._procs = [
            ctx.Process(
                target=_client,
                args=(
                    target,
                    req.SerializeToString(),
                    rate / processes,
                    seed + i,
                    seconds,
                    self._ready,
                    self._go,
                    self._out,
                ),
            )
            for i in range(processes)
        ]

    def start(self) -> float:
        for proc in self._procs:
            proc.start()
        for _ in self._procs:
            self._ready.get(timeout=120)
        self.t0 = time.time() + 0.2
        for _ in self._procs:
            self._go.put(self.t0)
        return self.t0

    def join(self) -> list[Sample]:
        wait = self.seconds + REQUEST_TIMEOUT_S + 60
        raw = [s for _ in self._procs for s in self._out.get(timeout=wait)]
        for proc in self._procs:
            proc.join()
        return sorted((Sample(*s) for s in raw), key=lambda s: s.start)
