"""MLServer custom runtime serving one TFLite model with ai_edge_litert.

model-settings.json (written by run_mlserver.py):
  "implementation": "mlserver_runtime.TFLiteRuntime",
  "parameters": {"uri": "<abs>/<name>.tflite",
                 "extra": {"metadata": "<abs>/<name>.json", "num_threads": 1}}

`load()` runs once in every MLServer inference worker process (parallel
workers), so each worker holds its own interpreter for each model.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from tflite_runner import NUM_THREADS, TFLiteModel


class TFLiteRuntime(MLModel):
    async def load(self) -> bool:
        params = self.settings.parameters
        if params is None or not params.uri:
            raise ValueError(f"{self.name}: parameters.uri (the .tflite path) is required")
        extra = params.extra or {}
        meta = extra.get("metadata") or params.uri[: -len(".tflite")] + ".json"
        self._model = TFLiteModel(params.uri, meta, int(extra.get("num_threads", NUM_THREADS)))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        model = self._model
        if len(payload.inputs) != 1:
            raise InferenceError(f"expected exactly one input, got {len(payload.inputs)}")
        request_input = payload.inputs[0]
        try:
            model.check_input(request_input.name, request_input.datatype, request_input.shape)
        except ValueError as err:
            raise InferenceError(str(err)) from err
        array = NumpyCodec.decode_input(request_input)
        out = model.run(array)
        spec = model.outputs[0]
        if payload.outputs and any(o.name != spec.name for o in payload.outputs):
            raise InferenceError(f"only output {spec.name!r} exists")
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(spec.name, out)],
        )
