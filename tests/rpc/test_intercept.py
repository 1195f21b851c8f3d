"""Interceptors wrap each method once, on a real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any, TypeAlias

import grpc
import pytest

from services.rpc.intercept import Behavior, UnaryInterceptor
from services.rpc.status import ErrorMappingInterceptor

SERVICE = "test.Echo"
Call: TypeAlias = "grpc.UnaryUnaryMultiCallable[bytes, bytes]"


def _method(channel: grpc.Channel, name: str) -> Call:
    """Raw bytes in and out: no protos needed to exercise the interceptors."""
    call: Call = channel.unary_unary(f"/{SERVICE}/{name}")
    return call


class CountingInterceptor(UnaryInterceptor):
    """Counts how often a behavior is wrapped and how often a wrapper runs."""

    def __init__(self) -> None:
        super().__init__()
        self.wrapped: list[str] = []
        self.calls = 0

    def around(self, method: str, inner: Behavior) -> Behavior:
        self.wrapped.append(method)

        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            self.calls += 1
            return inner(request, context)

        return counted


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"bad":
        raise ValueError("bad request: say something else")
    return request


@pytest.fixture
def served() -> Iterator[tuple[grpc.Channel, CountingInterceptor]]:
    counting = CountingInterceptor()
    errors = ErrorMappingInterceptor([(ValueError, grpc.StatusCode.INVALID_ARGUMENT)])
    server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[counting, errors])
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Say": handler, "Shout": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, counting
    finally:
        server.stop(0)


def test_each_method_is_wrapped_once_and_every_call_runs_the_wrapper(
    served: tuple[grpc.Channel, CountingInterceptor],
) -> None:
    channel, counting = served
    say, shout = _method(channel, "Say"), _method(channel, "Shout")
    assert [say(b"hi", timeout=5) for _ in range(5)] == [b"hi"] * 5
    assert shout(b"HI", timeout=5) == b"HI"
    assert counting.wrapped == [f"/{SERVICE}/Say", f"/{SERVICE}/Shout"]
    assert counting.calls == 6


def test_error_mapping_still_applies_to_every_call_after_caching(
    served: tuple[grpc.Channel, CountingInterceptor],
) -> None:
    channel, _ = served
    say = _method(channel, "Say")
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            say(b"bad", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "say something else" in (err.value.details() or "")
    assert say(b"ok", timeout=5) == b"ok"


def test_unknown_methods_are_not_cached(served: tuple[grpc.Channel, CountingInterceptor]) -> None:
    channel, counting = served
    for i in range(3):
        with pytest.raises(grpc.RpcError) as err:
            _method(channel, f"Nope{i}")(b"x", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert counting.wrapped == []
    assert counting._wrapped == {}
