"""Reads a PyTorch state dict (legacy or zip serialization) into numpy, without torch.

The unpickler resolves only the handful of names a state dict needs (tensor
rebuild, storage types, OrderedDict); anything else in the file is refused,
so a hostile checkpoint cannot run code.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(Exception):
    """The file is not a PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], *_: Any) -> _TensorRef:  # fmt: skip
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype: np.dtype[Any] = _DTYPES[name]


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise CheckpointError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> _StorageRef:
        kind, storage_type, key, _location, *_ = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected persistent id {kind!r}")
        ref = _StorageRef(str(key), storage_type.dtype)
        self.storages[ref.key] = ref
        return ref


def _materialize(ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    flat = data[ref.storage.key]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view)


def _legacy(raw: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(raw)
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(stream)  # noqa: S301 (plain ints and a dict of ints)
    unpickler = _Unpickler(stream)
    state = unpickler.load()
    keys = pickle.load(stream)  # noqa: S301 (a list of strings)
    data = {}
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        dtype = unpickler.storages[str(key)].dtype
        data[str(key)] = np.frombuffer(stream.read(count * dtype.itemsize), dtype)
    return {name: _materialize(ref, data) for name, ref in state.items()}


def _zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0]
        unpickler = _Unpickler(io.BytesIO(archive.read(f"{prefix}/data.pkl")))
        state = unpickler.load()
        data = {
            key: np.frombuffer(archive.read(f"{prefix}/data/{key}"), ref.dtype)
            for key, ref in unpickler.storages.items()
        }
    return {name: _materialize(ref, data) for name, ref in state.items()}


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a state dict by name, as float/int numpy arrays."""
    if zipfile.is_zipfile(path):
        return _zip(path)
    return _legacy(path.read_bytes())
