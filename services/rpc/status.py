"""Exceptions to gRPC status codes, in one interceptor per server.

Each service passes its own table (exception class -> code); an exception not
in the table becomes INTERNAL, logged by type only, and never takes the
server down. Messages are truncated and must not carry secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import grpc

from services.rpc.intercept import Behavior, UnaryInterceptor

log = logging.getLogger(__name__)
MAX_MESSAGE = 400
CodeTable = Sequence[tuple[type[Exception], grpc.StatusCode]]


def code_for(err: Exception, table: CodeTable) -> grpc.StatusCode | None:
    return next((code for kind, code in table if isinstance(err, kind)), None)


class ErrorMappingInterceptor(UnaryInterceptor):
    def __init__(self, table: CodeTable) -> None:
        super().__init__()
        self._table = table

    def around(self, method: str, inner: Behavior) -> Behavior:
        table = self._table

        def mapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return inner(request, context)
            except Exception as err:
                code = code_for(err, table)
                if code is None:
                    if cast(Any, context).code() is not None:  # aborted on purpose
                        raise
                    log.error("%s failed unexpectedly: %s", method, type(err).__name__)
                    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
                context.abort(code, str(err)[:MAX_MESSAGE])

        return mapped
