"""KServe (kserve.ModelServer) serving TFLite models with ai_edge_litert.

One `TFLiteKServeModel` (a `kserve.Model`) per <name>.tflite, each with its
own interpreter (num_threads=1 by default). `predict` takes the v2
`InferRequest` and returns an `InferResponse`. Run it through run_kserve.py,
or directly:

  python kserve_model.py --models-dir DIR --grpc-port N --http-port M
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument(
        "--num-threads", type=int, default=1, help="TFLite interpreter threads (default 1)"
    )
    return p.parse_args()


if __name__ == "__main__":
    _ARGS = _parse()
    # kserve.model_server parses sys.argv at import time; keep our flags away from it.
    sys.argv = sys.argv[:1]

import kserve  # noqa: E402
from _launch import discover  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from tflite_runner import NUM_THREADS, TFLiteModel  # noqa: E402


class TFLiteKServeModel(kserve.Model):
    def __init__(self, name: str, tflite_path: str, meta_path: str, num_threads: int = NUM_THREADS):
        super().__init__(name)
        self._paths = (tflite_path, meta_path)
        self._num_threads = num_threads
        self._model: TFLiteModel | None = None
        self.load()

    def load(self) -> bool:
        self._model = TFLiteModel(*self._paths, num_threads=self._num_threads)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [vars(t) for t in self._model.inputs]

    def get_output_types(self) -> list[dict]:
        return [vars(t) for t in self._model.outputs]

    def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        model = self._model
        if not isinstance(payload, InferRequest):
            raise InvalidInput("this model speaks the v2 protocol only")
        if len(payload.inputs) != 1:
            raise InvalidInput(f"expected exactly one input, got {len(payload.inputs)}")
        infer_input = payload.inputs[0]
        try:
            model.check_input(infer_input.name, infer_input.datatype, infer_input.shape)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        out = model.run(infer_input.as_numpy())
        spec = model.outputs[0]
        output = InferOutput(name=spec.name, shape=list(out.shape), datatype=spec.datatype)
        output.set_data_from_numpy(out, binary_data=True)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            model_version=model.version,
            infer_outputs=[output],
        )


def main(args: argparse.Namespace) -> None:
    models = [
        TFLiteKServeModel(name, tfl, meta, args.num_threads)
        for name, tfl, meta in discover(args.models_dir)
    ]
    kserve.ModelServer(grpc_port=args.grpc_port, http_port=args.http_port, enable_grpc=True).start(
        models
    )


if __name__ == "__main__":
    main(_ARGS)
