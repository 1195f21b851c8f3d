"""The interpreter pool with a real TFLite model: where the sim EPC's paging is paid."""

from __future__ import annotations

import numpy as np

from services.model_server.runtime import InterpreterPool
from tests.model_server.harness import ZOO


def test_touch_runs_while_the_interpreter_is_held() -> None:
    """On SGX, EPC faults happen inside invoke: paging belongs to the service time."""
    pool = InterpreterPool((ZOO / "mobilenet_v1_int8.tflite").read_bytes(), size=1, threads=1)
    inputs, _ = pool.details()
    free_during_touch: list[int] = []
    image = np.zeros(inputs[0]["shape"], dtype=inputs[0]["dtype"])
    outputs = pool.run([image], None, lambda: free_during_touch.append(pool._free.qsize()))
    assert free_during_touch == [0]  # the only interpreter was taken before the touch
    assert pool._free.qsize() == 1  # and given back after the inference
    assert outputs[0].shape == (1, 1000)  # ImageNet classes
