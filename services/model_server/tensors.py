"""KServe v2 tensors <-> numpy, with the validation a model's inputs need.

Every check names the tensor and what was expected, before any inference runs.
Raw inputs are wrapped without copying (`np.frombuffer` on the request bytes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inference import grpc_predict_v2_pb2 as pb
from services.model_server.errors import InvalidInputError
from services.model_server.tensor_spec import TensorSpec

_TYPED_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _check_shape(spec: TensorSpec, shape: Sequence[int], max_batch: int) -> tuple[int, ...]:
    got = tuple(int(d) for d in shape)
    expected = "[" + ", ".join("N" if d < 0 else str(d) for d in spec.shape) + "]"
    if len(got) != len(spec.shape) or any(
        e >= 0 and g != e for g, e in zip(got, spec.shape, strict=True)
    ):
        raise InvalidInputError(f"input '{spec.name}': shape {list(got)}, expected {expected}")
    if got[0] < 1 or got[0] > max_batch:
        raise InvalidInputError(f"input '{spec.name}': batch size {got[0]} outside 1..{max_batch}")
    return got


def decode_inputs(
    request: pb.ModelInferRequest, specs: Sequence[TensorSpec], max_batch: int
) -> list[np.ndarray]:
    """The request's input tensors in the model's input order, validated."""
    by_name = {t.name: (i, t) for i, t in enumerate(request.inputs)}
    unknown = set(by_name) - {s.name for s in specs}
    if unknown:
        raise InvalidInputError(
            f"unknown input '{sorted(unknown)[0]}'; the model takes "
            + ", ".join(f"'{s.name}'" for s in specs)
        )
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    arrays = []
    for spec in specs:
        if spec.name not in by_name:
            raise InvalidInputError(f"missing input '{spec.name}' ({spec.datatype})")
        index, tensor = by_name[spec.name]
        if tensor.datatype != spec.datatype:
            raise InvalidInputError(
                f"input '{spec.name}': datatype {tensor.datatype or '(empty)'}, "
                f"expected {spec.datatype}"
            )
        shape = _check_shape(spec, tensor.shape, max_batch)
        arrays.append(_array(spec, tensor, raw[index] if raw else None, shape))
    return arrays


def _array(
    spec: TensorSpec,
    tensor: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    shape: tuple[int, ...],
) -> np.ndarray:
    count = math.prod(shape)
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidInputError(f"input '{spec.name}': both raw and typed contents given")
        expected = count * spec.dtype.itemsize
        if len(raw) != expected:
            raise InvalidInputError(
                f"input '{spec.name}': {len(raw)} bytes, "
                f"expected {expected} for shape {list(shape)}"
            )
        return np.frombuffer(raw, dtype=spec.dtype).reshape(shape)
    field = _TYPED_FIELD.get(spec.datatype)
    values = getattr(tensor.contents, field) if field else ()
    if len(values) != count:
        raise InvalidInputError(
            f"input '{spec.name}': {len(values)} values in contents, expected {count}"
        )
    try:
        return np.asarray(values, dtype=spec.dtype).reshape(shape)
    except OverflowError as err:
        raise InvalidInputError(
            f"input '{spec.name}': value out of range for {spec.datatype}"
        ) from err


def requested_outputs(request: pb.ModelInferRequest, specs: Sequence[TensorSpec]) -> list[int]:
    """Indices of the outputs to return (all when none are named)."""
    if not request.outputs:
        return list(range(len(specs)))
    names = [s.name for s in specs]
    indices = []
    for wanted in request.outputs:
        if wanted.name not in names:
            raise InvalidInputError(
                f"unknown output '{wanted.name}'; the model produces "
                + ", ".join(f"'{n}'" for n in names)
            )
        indices.append(names.index(wanted.name))
    return indices


def encode_outputs(
    response: pb.ModelInferResponse,
    specs: Sequence[TensorSpec],
    arrays: Sequence[np.ndarray],
    indices: Sequence[int],
) -> None:
    """Appends outputs as raw contents (the compact, zero-conversion form)."""
    for index in indices:
        spec, array = specs[index], arrays[index]
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(array.shape))
        response.raw_output_contents.append(array.tobytes())
