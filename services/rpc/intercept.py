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
