"""The one place where ACS errors become gRPC status codes.

Messages are truncated and never include secrets, nonces or expected values
beyond what the caller already sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import grpc

from services.attest import errors
from services.attest.audit import AuditChainError
from services.attest.sealing import SealingError
from services.attest.store.base import StoreError

log = logging.getLogger(__name__)
MAX_MESSAGE = 400

CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (SealingError, grpc.StatusCode.DATA_LOSS),
    (AuditChainError, grpc.StatusCode.DATA_LOSS),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
]


def code_for(err: Exception) -> grpc.StatusCode | None:
    return next((code for kind, code in CODES if isinstance(err, kind)), None)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Turns domain exceptions into statuses; an unexpected one becomes INTERNAL
    (logged with its type only) and never takes the server down."""

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

        def mapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return inner(request, context)
            except Exception as err:
                code = code_for(err)
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
