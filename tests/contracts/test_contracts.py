"""Every RPC of every s3ml contract round-trips through a real gRPC server.

For each service in the generated modules, a server on a loopback port answers
each method with a fully populated response; a client built from the generated
stub sends a fully populated request. Both sides check that every field
arrived intact, so a broken generator, a missing message or a wire mismatch
fails here.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import pytest
from google.protobuf import descriptor, message
from google.protobuf.message_factory import GetMessageClass

from inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from s3ml.attest.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    provisioning_pb2,
    provisioning_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    stakeholder_pb2,
    stakeholder_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
)
from s3ml.policy.v1 import agent_pb2, agent_pb2_grpc, verifier_pb2, verifier_pb2_grpc
from s3ml.scaler.v1 import scaler_pb2, scaler_pb2_grpc

FD = descriptor.FieldDescriptor
CONTRACTS: list[tuple[types.ModuleType, types.ModuleType]] = [
    (grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc),
    (provisioning_pb2, provisioning_pb2_grpc),
    (registry_pb2, registry_pb2_grpc),
    (trust_pb2, trust_pb2_grpc),
    (audit_pb2, audit_pb2_grpc),
    (stakeholder_pb2, stakeholder_pb2_grpc),
    (verifier_pb2, verifier_pb2_grpc),
    (agent_pb2, agent_pb2_grpc),
    (scaler_pb2, scaler_pb2_grpc),
]

_SCALARS: dict[int, Callable[[int], Any]] = {
    FD.TYPE_BOOL: lambda seed: seed % 2 == 1,
    FD.TYPE_STRING: lambda seed: f"value-{seed}-é",
    FD.TYPE_BYTES: lambda seed: bytes([seed % 256, 0, 255]) * 3,
    FD.TYPE_FLOAT: lambda seed: float(seed) + 0.5,
    FD.TYPE_DOUBLE: lambda seed: float(seed) + 0.25,
    FD.TYPE_ENUM: lambda seed: 1,
}


def _scalar(field: descriptor.FieldDescriptor, seed: int) -> Any:
    if field.type in _SCALARS:
        return _SCALARS[field.type](seed)
    if field.type in (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_SINT32, FD.TYPE_SINT64):
        return -seed - 1
    return seed + 1


def populate(msg: message.Message, seed: int = 1, depth: int = 0) -> message.Message:
    """Sets every field of `msg` (first member of each oneof) deterministically."""
    seen_oneofs: set[str] = set()
    fields = cast(list[descriptor.FieldDescriptor], list(msg.DESCRIPTOR.fields))
    for offset, field in enumerate(fields):
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        value_seed = seed + offset
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _populate_map(msg, field, value_seed, depth)
        elif field.message_type is not None:
            if depth >= 3:
                continue
            target = getattr(msg, field.name)
            if field.is_repeated:
                populate(target.add(), value_seed, depth + 1)
            else:
                populate(target, value_seed, depth + 1)
        elif field.is_repeated:
            getattr(msg, field.name).extend([_scalar(field, value_seed), _scalar(field, 7)])
        else:
            setattr(msg, field.name, _scalar(field, value_seed))
    return msg


def _populate_map(
    msg: message.Message, field: descriptor.FieldDescriptor, seed: int, depth: int
) -> None:
    entry = field.message_type
    assert entry is not None
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    key = _scalar(key_field, seed)
    target = getattr(msg, field.name)
    if value_field.message_type is not None:
        if depth < 3:
            populate(target[key], seed, depth + 1)
    else:
        target[key] = _scalar(value_field, seed)


def _methods() -> Iterator[tuple[types.ModuleType, descriptor.MethodDescriptor]]:
    for pb2, grpc_module in CONTRACTS:
        for service in pb2.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield grpc_module, method


ALL_METHODS = list(_methods())


def _echo_handler(
    request_class: type[message.Message], response_class: type[message.Message]
) -> Callable[[message.Message, grpc.ServicerContext], message.Message]:
    """Checks the request arrived fully populated and answers a populated response."""
    expected = populate(request_class())

    def handle(request: message.Message, context: grpc.ServicerContext) -> message.Message:
        if request != expected:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request altered in transit")
        return populate(response_class())

    return handle


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    """A real gRPC server on loopback that answers every method of every contract."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for _, method in ALL_METHODS:
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        handlers.setdefault(method.containing_service.full_name, {})[method.name] = (
            grpc.unary_unary_rpc_method_handler(
                _echo_handler(request_class, response_class),
                request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString,
            )
        )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, h) for name, h in handlers.items()]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(grace=None)


def test_every_service_has_methods() -> None:
    services = {m.containing_service.full_name for _, m in ALL_METHODS}
    assert "inference.GRPCInferenceService" in services
    assert {"s3ml.attest.v1.Provisioning", "s3ml.policy.v1.Verifier", "s3ml.scaler.v1.Scaler"} <= (
        services
    )


@pytest.mark.parametrize(
    ("grpc_module", "method"),
    ALL_METHODS,
    ids=[m.full_name for _, m in ALL_METHODS],
)
def test_round_trip(
    server_port: int, grpc_module: types.ModuleType, method: descriptor.MethodDescriptor
) -> None:
    stub_class = getattr(grpc_module, f"{method.containing_service.name}Stub")
    with grpc.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        stub = stub_class(channel)
        request = populate(GetMessageClass(method.input_type)())
        response = getattr(stub, method.name)(request, timeout=10)
    assert response == populate(GetMessageClass(method.output_type)())
    assert response.ByteSize() > 0 or not method.output_type.fields


def test_kserve_wire_names() -> None:
    """Field numbers a KServe v2 client relies on."""
    request = grpc_predict_v2_pb2.ModelInferRequest.DESCRIPTOR
    assert request.fields_by_name["raw_input_contents"].number == 7
    assert request.fields_by_name["inputs"].number == 5
    contents = grpc_predict_v2_pb2.InferTensorContents.DESCRIPTOR
    assert contents.fields_by_name["fp32_contents"].number == 6
    assert grpc_predict_v2_pb2.DESCRIPTOR.package == "inference"
