"""Exceptions to gRPC status codes, in one interceptor per server.

Each service passes its own table (exception class -> code); an exception not
in the table becomes INTERNAL, logged by type only, and never takes the
server down. Messages are truncated and must not carry secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc

log = logging.getLogger(__name__)
MAX_MESSAGE = 400
CodeTable = Sequence[tuple[type[Exception], grpc.StatusCode]]


def code_for(err: Exception, table: CodeTable) -> grpc.StatusCode | None:
    return next((code for kind, code in table if isinstance(err, kind)), None)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    def __init__(self, table: CodeTable) -> None:
        self._table = table

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        table = self._table

        def mapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return inner(request, context)
            except Exception as err:
                code = code_for(err, table)
                if code is None:
                    if cast(Any, context).code() is not None:  # the handler aborted on purpose
                        raise
                    log.error("%s failed unexpectedly: %s", method, type(err).__name__)
                    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
                context.abort(code, str(err)[:MAX_MESSAGE])

        return grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
