"""The native data plane: a C++ child that serves KServe v2 for this replica.

The supervisor (this process) attests, unseals the models and keeps the CRL
fresh; the child (services/model_server/native) does only the request path, in
C++ with no interpreter lock. They talk over the child's stdin/stdout in
length-framed messages (proto s3ml.model_server.v1), so the TLS key and the
decrypted models never touch the filesystem. Closing stdin stops the child.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import select
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from s3ml.model_server.v1 import dataplane_pb2 as dp
from services.model_server.repository import LoadedModel
from services.model_server.tensor_spec import TensorSpec
from services.scaler.epc.pool import TouchResult

log = logging.getLogger("model-server")
BINARY = Path(__file__).absolute().parent / "native" / "s3ml_dataplane"
_HEADER = struct.Struct(">I")
# Building every model's interpreters takes seconds; a child silent for this long is hung.
START_TIMEOUT_S = 120.0


class DataPlaneError(Exception):
    """The native data plane could not start, or died; the message says why."""


def tensor_specs(specs: Iterable[TensorSpec]) -> list[dp.TensorSpec]:
    return [dp.TensorSpec(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


def model_message(model: LoadedModel) -> dp.Model:
    info = model.info
    return dp.Model(
        name=info.name,
        version=info.version,
        platform=info.platform,
        tflite=model.pool.model,
        inputs=tensor_specs(info.inputs),
        outputs=tensor_specs(info.outputs),
    )


def write_control(stream: IO[bytes], control: dp.Control) -> None:
    """One frame to the child (native/framing.h: 4-byte big-endian length, message)."""
    body = control.SerializeToString()
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def read_events(stream: IO[bytes]) -> Iterator[dp.Event]:
    """The child's frames, until it closes its stdout."""
    while len(header := stream.read(_HEADER.size)) == _HEADER.size:
        (size,) = _HEADER.unpack(header)
        yield dp.Event.FromString(stream.read(size))


class NativeDataPlane:
    """One running child; `port` is where it listens. `on_calls` gets the calls it
    served (for spans), from a reader thread, about once a second."""

    def __init__(
        self,
        start: dp.Start,
        on_calls: Callable[[dp.Calls], None],
        binary: Path = BINARY,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        if not binary.exists():
            raise DataPlaneError(f"native data plane not built: {binary} is missing")
        self._proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], None]] = []
        self.stats = dp.Stats()
        self._on_calls = on_calls
        self._epc: Callable[[], TouchResult] | None = None
        self.models_resident_bytes = 0
        # Written from a thread: a child that reads nothing would block the write, and the
        # timeout below could not fire. A child that died at once says why below.
        writer = threading.Thread(target=self._send_start, args=(start,), daemon=True)
        writer.start()
        try:
            self.port = self._await_ready(start_timeout)
        finally:
            writer.join()  # done, or failed on the pipe of the killed child
        self._reader = threading.Thread(
            target=self._read_events, name="dataplane-events", daemon=True
        )
        self._reader.start()

    def _send_start(self, start: dp.Start) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            write_control(self._stdin, dp.Control(start=start))

    def _await_ready(self, timeout: float) -> int:
        first = None
        if select.select([self._stdout], [], [], timeout)[0]:
            first = next(read_events(self._stdout), None)
            why = (
                first.fatal if first is not None and first.HasField("fatal") else "no reason given"
            )
        else:
            why = f"no answer within {timeout:.0f} s"
        if first is not None and first.HasField("ready"):
            self.models_resident_bytes = first.ready.models_resident_bytes
            return first.ready.port
        self._proc.kill()
        self._proc.wait()
        raise DataPlaneError(f"native data plane failed to start: {why}")

    def _read_events(self) -> None:
        for event in read_events(self._stdout):
            if event.HasField("stats"):
                self.stats = event.stats
            elif event.HasField("calls"):
                try:
                    self._on_calls(event.calls)
                except Exception:
                    log.exception("native data plane: could not record its calls")
            elif event.HasField("epc_touch"):
                self._answer_touch(event.epc_touch.ticket)
            elif event.HasField("fatal"):
                log.error("native data plane: %s", event.fatal)

    def account_epc_with(self, account: Callable[[], TouchResult]) -> None:
        """Sim EPC: the pool bookkeeping for the child's touches (it pays their cost)."""
        self._epc = account

    def _answer_touch(self, ticket: int) -> None:
        paged = TouchResult(0, 0)
        try:
            if self._epc is not None:  # None only until the replica's enclave is registered
                paged = self._epc()
        except Exception:
            log.exception("sim EPC: could not account the data plane's touch")
        self._send(dp.Control(epc_paging=dp.EpcPaging(
            ticket=ticket, paged_in=paged.paged_in, paged_out=paged.paged_out)))  # fmt: skip

    def _send(self, control: dp.Control) -> bool:
        with self._lock:
            try:
                write_control(self._stdin, control)
            except (BrokenPipeError, ValueError):
                return False
        return True

    def update_peers(self, peers: dp.PeerPolicy) -> None:
        """Hands a refreshed revocation list to the running child."""
        if not self._send(dp.Control(peers=peers)):
            log.error("native data plane is gone; cannot update its revocation list")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def exit_reason(self) -> str | None:
        """Why the child no longer serves (it exited, how), or None while it runs."""
        code = self._proc.poll()
        if code is None:
            return None
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"the native data plane {how}"

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._on_stop.append(callback)

    def stop(self, grace: float = 2.0) -> None:
        for callback in self._on_stop:
            callback()
        with self._lock:
            if not self._stdin.closed:
                self._stdin.close()  # the child shuts its server down and exits
        try:
            self._proc.wait(timeout=grace + 3.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5.0)  # its last counters and calls, reported on exit


class DataPlaneMetrics(Collector):
    """Exports the children's counters under the Python plane's metric names.

    One per process, summing over its planes (one in production; tests run several).
    """

    def __init__(self) -> None:
        self._planes: list[NativeDataPlane] = []
        self._lock = threading.Lock()

    def add(self, plane: NativeDataPlane) -> None:
        with self._lock:
            self._planes.append(plane)

    def remove(self, plane: NativeDataPlane) -> None:
        with self._lock:
            if plane in self._planes:
                self._planes.remove(plane)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        with self._lock:
            snapshots = [p.stats for p in self._planes]
        calls: dict[tuple[str, str], int] = {}
        latency: dict[str, tuple[list[int], float]] = {}
        bounds: list[str] = []
        for stats in snapshots:
            bounds = [*(f"{b}" for b in stats.bounds_seconds), "+Inf"]
            for c in stats.calls:
                calls[(c.model, c.code)] = calls.get((c.model, c.code), 0) + c.count
            for h in stats.latency:
                counts, total = latency.get(h.model, ([0] * len(bounds), 0.0))
                latency[h.model] = (
                    [a + b for a, b in zip(counts, h.bucket_counts, strict=True)],
                    total + h.sum_seconds,
                )
        yield self._calls(calls)
        yield self._latency(latency, bounds)
        yield GaugeMetricFamily(
            "s3ml_inference_in_flight",
            "ModelInfer calls being served",
            value=sum(s.in_flight for s in snapshots),
        )
        yield GaugeMetricFamily(
            "s3ml_inference_queue_depth",
            "ModelInfer calls waiting for an interpreter",
            value=sum(s.queue_depth for s in snapshots),
        )

    @staticmethod
    def _calls(calls: dict[tuple[str, str], int]) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "s3ml_inference_requests", "ModelInfer calls", labels=["model", "code"]
        )
        for (model, code), count in sorted(calls.items()):
            family.add_metric([model, code], count)
        return family

    @staticmethod
    def _latency(
        latency: dict[str, tuple[list[int], float]], bounds: list[str]
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "s3ml_inference_latency_seconds",
            "ModelInfer latency inside the server",
            labels=["model"],
        )
        for model, (counts, total) in sorted(latency.items()):
            cumulative = [float(c) for c in itertools.accumulate(counts)]
            family.add_metric([model], list(zip(bounds, cumulative, strict=True)), total)
        return family


_METRICS: list[DataPlaneMetrics] = []  # registered once per process
_METRICS_LOCK = threading.Lock()


def export_metrics(plane: NativeDataPlane) -> None:
    """Exports `plane`'s counters, replacing the in-process inference metrics (unused here)."""
    from services.model_server import api  # noqa: PLC0415

    with _METRICS_LOCK:
        if not _METRICS:
            for metric in (api.REQUESTS, api.LATENCY, api.IN_FLIGHT, api.QUEUE_DEPTH):
                REGISTRY.unregister(metric)
            _METRICS.append(DataPlaneMetrics())
            REGISTRY.register(_METRICS[0])
        metrics = _METRICS[0]
    metrics.add(plane)
    plane.on_stop(lambda: metrics.remove(plane))
