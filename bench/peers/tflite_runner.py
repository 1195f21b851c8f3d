"""Shared TFLite execution for the peer servers (MLServer and KServe runtimes).

One `ai_edge_litert.interpreter.Interpreter` per model (per server process),
created with an explicit `num_threads` (1 by default). The interpreter is
guarded by a lock so a request never overlaps another on the same interpreter.
The batch dimension is resized on demand, like the main project's runtime.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

NUM_THREADS = int(os.environ.get("S3ML_PEER_TFLITE_THREADS", "1"))

_NP_OF = {
    "FP32": np.float32,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "FP16": np.float16,
    "INT32": np.int32,
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]


class TFLiteModel:
    def __init__(self, tflite_path: str, meta_path: str, num_threads: int = NUM_THREADS) -> None:
        with open(meta_path) as f:
            meta = json.load(f)
        self.meta: dict[str, Any] = meta
        self.name: str = os.path.splitext(os.path.basename(tflite_path))[0]
        self.version: str = str(meta.get("version", "1"))
        self.inputs = [
            TensorSpec(t["name"], t["datatype"], list(t["shape"])) for t in meta["inputs"]
        ]
        self.outputs = [
            TensorSpec(t["name"], t["datatype"], list(t["shape"])) for t in meta["outputs"]
        ]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ValueError(f"{self.name}: expected one input and one output")
        self.num_threads = num_threads
        self._interp = Interpreter(model_path=tflite_path, num_threads=num_threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        self._lock = threading.Lock()
        want = _NP_OF[self.inputs[0].datatype]
        if np.dtype(self._in["dtype"]) != np.dtype(want):
            raise ValueError(
                f"{self.name}: metadata says {self.inputs[0].datatype}, model wants {self._in['dtype']}"
            )

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(_NP_OF[self.inputs[0].datatype])

    def check_input(self, name: str, datatype: str, shape: list[int]) -> None:
        spec = self.inputs[0]
        if name != spec.name:
            raise ValueError(f"unknown input {name!r}; expected {spec.name!r}")
        if datatype != spec.datatype:
            raise ValueError(f"input {name!r} has datatype {datatype}; expected {spec.datatype}")
        if len(shape) != len(spec.shape) or any(
            want != -1 and int(got) != want for got, want in zip(shape, spec.shape, strict=False)
        ):
            raise ValueError(f"input {name!r} has shape {list(shape)}; expected {spec.shape}")

    def run(self, array: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(array, dtype=self.input_dtype)
        with self._lock:
            batch = int(array.shape[0])
            if batch != self._batch:
                self._interp.resize_tensor_input(self._in["index"], array.shape)
                self._interp.allocate_tensors()
                self._in = self._interp.get_input_details()[0]
                self._out = self._interp.get_output_details()[0]
                self._batch = batch
            self._interp.set_tensor(self._in["index"], array)
            self._interp.invoke()
            return self._interp.get_tensor(self._out["index"])
