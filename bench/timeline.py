"""Closed-loop load that records every request's start time and latency.

Each client process opens a NEW connection (own TLS handshake) per request:
HAProxy balances in TCP mode, per connection, as IPVS does in the paper, so a
long-lived HTTP/2 connection would pin a client to one replica and no policy
(round robin, least connections, weights) could act. The handshake is part
of every measured latency, for every policy alike.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass

import grpc

from bench.load import Target
from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc

REQUEST_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Sample:
    start: float  # seconds since the run's t0
    latency_s: float
    ok: bool


def _fresh_channel(target: Target) -> grpc.Channel:
    assert target.tls is not None
    ca, key, cert = target.tls
    options: list[tuple[str, int | str]] = [
        ("grpc.ssl_target_name_override", target.server_name),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.use_local_subchannel_pool", 1),  # never reuse another channel's connection
    ]
    return grpc.secure_channel(
        target.address, grpc.ssl_channel_credentials(ca, key, cert), options
    )


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
    t0: float,
    until: float,
    out: multiprocessing.Queue[list[tuple[float, float, bool]]],
) -> None:
    req = pb.ModelInferRequest.FromString(req_bytes)
    samples = []
    while time.time() < t0:
        time.sleep(0.01)
    while (now := time.time()) < until:
        ok = one_request(target, req)
        samples.append((now - t0, time.time() - now, ok))
    out.put(samples)


class ClosedLoop:
    """`clients` processes sending back to back from t0 for `seconds`; start(), then join()."""

    def __init__(
        self, target: Target, req: pb.ModelInferRequest, clients: int, seconds: float
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue: multiprocessing.Queue[list[tuple[float, float, bool]]] = ctx.Queue()
        self.t0 = time.time() + 3.0  # the spawned interpreters start up before t0
        self.seconds = seconds
        args = (target, req.SerializeToString(), self.t0, self.t0 + seconds, self._queue)
        self._procs = [ctx.Process(target=_client, args=args) for _ in range(clients)]

    def start(self) -> None:
        for proc in self._procs:
            proc.start()

    def join(self) -> list[Sample]:
        raw = [s for _ in self._procs for s in self._queue.get(timeout=self.seconds + 120)]
        for proc in self._procs:
            proc.join()
        return sorted((Sample(*s) for s in raw), key=lambda s: s.start)
