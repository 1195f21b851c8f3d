"""Wrapping unary-unary handlers, the one shape every s3ml interceptor needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Continuation = Callable[[grpc.HandlerCallDetails], "grpc.RpcMethodHandler[Any, Any] | None"]
Behavior = Callable[[Any, grpc.ServicerContext], Any]


def wrap_unary(
    continuation: Continuation,
    details: grpc.HandlerCallDetails,
    around: Callable[[Behavior], Behavior],
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """The handler `continuation` finds, its unary-unary behavior wrapped by `around`."""
    handler = continuation(details)
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        around(handler.unary_unary),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class UnaryInterceptor(grpc.ServerInterceptor):
    """Wraps each registered method's behavior once, not on every call.

    gRPC asks the interceptor chain for a handler on every call; building the
    wrapper closures and handler tuples each time cost tens of microseconds per
    interceptor on the inference path. Handlers are fixed once a server starts,
    so the wrapped handler is kept per method. Unknown methods (None) are not
    kept: a client must not grow the cache by inventing method names. Two first
    calls racing both wrap; `setdefault` keeps one (atomic on a dict).
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def around(self, method: str, inner: Behavior) -> Behavior:
        raise NotImplementedError

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = wrap_unary(
            continuation, handler_call_details, lambda inner: self.around(method, inner)
        )
        if handler is None:
            return None
        return self._wrapped.setdefault(method, handler)
