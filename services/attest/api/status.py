"""The ACS's table of error classes to gRPC status codes (the only one).

Messages never include secrets, nonces or expected values beyond what the
caller already sent.
"""

from __future__ import annotations

import grpc

from services.attest import errors
from services.attest.audit import AuditChainError
from services.attest.sealing import SealingError
from services.attest.store.base import StoreError
from services.rpc import status

CODES: status.CodeTable = [
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
    return status.code_for(err, CODES)


def interceptor() -> status.ErrorMappingInterceptor:
    return status.ErrorMappingInterceptor(CODES)
