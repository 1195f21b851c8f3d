"""OpenTelemetry spans for the calls the native data plane served.

The C++ data plane has no tracing SDK. It reports each call's timing, outcome
and the caller's `traceparent` (proto CallRecord, about once a second), and the
supervisor makes from it the spans the Python plane makes in-process:
`rpc.server <method>`, continuing the caller's trace, and under it
`model_server.infer` for ModelInfer. Timestamps are the data plane's own.
"""

from __future__ import annotations

import logging

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from s3ml.model_server.v1 import dataplane_pb2 as dp
from services.model_server.api import INFER_SPAN, Identity, infer_attributes
from services.telemetry.propagation import server_span_name

log = logging.getLogger("model-server")
_rpc_tracer = trace.get_tracer("s3ml.rpc")
_model_tracer = trace.get_tracer("s3ml.model_server")


def emit(calls: dp.Calls, me: Identity) -> None:
    """One server span per call, with an inference span under it for ModelInfer."""
    for record in calls.calls:
        _emit(record, me)
    if calls.dropped:
        log.warning(
            "native data plane: %d calls not traced (too many in one second)", calls.dropped
        )


def _end(span: Span, record: dp.CallRecord) -> None:
    if record.code != "OK":
        span.set_status(Status(StatusCode.ERROR, record.code))
    span.end(end_time=record.end_unix_nano)


def _emit(record: dp.CallRecord, me: Identity) -> None:
    caller = propagate.extract({"traceparent": record.traceparent}) if record.traceparent else None
    server = _rpc_tracer.start_span(
        server_span_name(record.method),
        context=caller,
        kind=SpanKind.SERVER,
        start_time=record.start_unix_nano,
    )
    if record.model:
        infer = _model_tracer.start_span(
            INFER_SPAN,
            context=trace.set_span_in_context(server),
            attributes=infer_attributes(record.model, record.version, me),
            start_time=record.infer_start_unix_nano,
        )
        _end(infer, record)
    _end(server, record)
