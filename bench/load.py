"""KServe v2 gRPC load generation shared by the serving benchmarks.

Sequential latency runs in this process; throughput runs in separate client
processes (spawned, so each has its own interpreter lock), all on loopback.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass

import grpc
import numpy as np

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Target:
    address: str
    tls: tuple[bytes, bytes, bytes] | None  # (ca, key, cert) for mTLS, None for plaintext
    server_name: str = ""

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(
    target: Target, req: pb.ModelInferRequest, count: int, warmup: int = 20
) -> list[float]:
    """Latencies (s) of `count` back-to-back calls from one client."""
    with target.channel() as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        for _ in range(warmup):
            call(req, timeout=60)
        out = []
        for _ in range(count):
            start = time.perf_counter()
            call(req, timeout=60)
            out.append(time.perf_counter() - start)
    return out


def _client(
    target: Target, req_bytes: bytes, begin: float, until: float, out: multiprocessing.Queue[int]
) -> None:
    req = pb.ModelInferRequest.FromString(req_bytes)
    done = 0
    with target.channel() as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        call(req, timeout=60)
        while (now := time.time()) < until:
            call(req, timeout=60)
            done += now >= begin
    out.put(done)


def throughput(target: Target, req: pb.ModelInferRequest, clients: int, seconds: float) -> float:
    """Requests/s completed by `clients` concurrent client processes in `seconds`."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    begin = time.time() + 4.0  # start-up of the spawned clients is not measured
    until = begin + seconds
    args = (target, req.SerializeToString(), begin, until, queue)
    procs = [ctx.Process(target=_client, args=args) for _ in range(clients)]
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=seconds + 120) for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds
