"""One trace per request across processes: W3C trace context in gRPC metadata.

The client interceptor opens a client span and injects `traceparent`; the
server interceptor continues that trace in a server span, so the model
server's (or ACS's) own spans hang under the caller's. Only method names and
status codes are recorded — never request contents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.rpc.intercept import Behavior, UnaryInterceptor

_tracer = trace.get_tracer("s3ml.rpc")


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class ClientTracing(grpc.UnaryUnaryClientInterceptor):
    """Opens `rpc.client <method>` and sends its context to the server."""

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        with _tracer.start_as_current_span(
            f"rpc.client {details.method}", kind=SpanKind.CLIENT
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata = [*(details.metadata or ()), *carrier.items()]
            outcome = continuation(
                _CallDetails(
                    details.method,
                    details.timeout,
                    metadata,
                    details.credentials,
                    getattr(details, "wait_for_ready", None),
                    getattr(details, "compression", None),
                ),
                request,
            )
            error = outcome.exception() if outcome.done() else None
            if isinstance(error, grpc.Call):
                span.set_attribute("rpc.grpc.status_code", error.code().name)
                span.set_status(Status(StatusCode.ERROR, error.code().name))
            return outcome


def server_span_name(method: str) -> str:
    """The server span of a call to `method` (its full gRPC name)."""
    return f"rpc.server {method}"


class ServerTracing(UnaryInterceptor):
    """Continues the caller's trace in `rpc.server <method>`."""

    def around(self, method: str, inner: Behavior) -> Behavior:
        name = server_span_name(method)

        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            carrier = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            with _tracer.start_as_current_span(
                name, context=propagate.extract(carrier), kind=SpanKind.SERVER
            ):
                return inner(request, context)

        return traced


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` with trace context sent on every unary call."""
    return grpc.intercept_channel(channel, ClientTracing())
