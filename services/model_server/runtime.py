"""TFLite interpreters (ai-edge-litert), pooled so concurrent requests run in parallel.

Each interpreter owns its tensors, so one request at a time uses it; the pool
holds several. `invoke` releases the GIL inside the runtime, so N interpreters
use N cores. Inputs are copied once, into the interpreter's own input buffer.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from services.model_server.errors import DeadlineError


@dataclass
class _Slot:
    interpreter: Interpreter
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    batch: int


class InterpreterPool:
    def __init__(self, model: bytes, size: int, threads: int) -> None:
        self._model = model  # the runtime keeps pointers into this buffer
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self.size = size
        for _ in range(size):
            interpreter = Interpreter(model_content=model, num_threads=threads)
            interpreter.allocate_tensors()
            self._free.put(
                _Slot(
                    interpreter,
                    interpreter.get_input_details(),
                    interpreter.get_output_details(),
                    int(interpreter.get_input_details()[0]["shape"][0]),
                )
            )

    @property
    def model(self) -> bytes:
        """The flatbuffer the interpreters run (decrypted: never written anywhere)."""
        return self._model

    def details(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        slot = self._free.get()
        try:
            return slot.inputs, slot.outputs
        finally:
            self._free.put(slot)

    def run(
        self,
        inputs: Sequence[np.ndarray],
        timeout: float | None,
        touch: Callable[[], None] = lambda: None,
    ) -> list[np.ndarray]:
        """One inference; `touch` runs while the interpreter is held.

        On SGX an enclave's EPC faults happen inside invoke, so paging is part of
        the interpreter's service time: the sim EPC's `touch` is paid there too,
        not by a request still waiting for an interpreter.
        """
        try:
            slot = self._free.get(timeout=timeout)
        except queue.Empty as err:
            raise DeadlineError("deadline passed while waiting for an interpreter") from err
        try:
            touch()
            return self._invoke(slot, inputs)
        finally:
            self._free.put(slot)

    @staticmethod
    def _invoke(slot: _Slot, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        batch = inputs[0].shape[0]
        if batch != slot.batch:
            for detail, array in zip(slot.inputs, inputs, strict=True):
                slot.interpreter.resize_tensor_input(detail["index"], array.shape)
            slot.interpreter.allocate_tensors()
            slot.outputs = slot.interpreter.get_output_details()
            slot.batch = batch
        for detail, array in zip(slot.inputs, inputs, strict=True):
            slot.interpreter.set_tensor(detail["index"], array)
        slot.interpreter.invoke()
        return [slot.interpreter.get_tensor(d["index"]) for d in slot.outputs]
