"""The attested inference client: trust the ACS, then call a model over mutual TLS.

    acs = client.connect("127.0.0.1:7443", pin, utcnow)          # verifies the ACS quote
    model = AttestedModel(acs, "127.0.0.1:8501", "mobilenet-v1-int8", creds_dir)
    top5 = model.classify(open("cat.jpg", "rb").read(), "mobilenet_v1_int8", labels)

The model server's certificate must chain to the ACS CA from the verified
trust bundle and name the service; calls retry UNAVAILABLE with backoff.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from services.attest.client import TrustedAcs, with_retries
from services.model_server import imaging
from services.telemetry.propagation import traced_channel


class InferenceClientError(Exception):
    """A request could not be made; the message says what to do."""


@dataclass(frozen=True)
class Prediction:
    labels: list[tuple[str, float]]
    latency_ms: float
    # Attempts that failed with UNAVAILABLE/DEADLINE_EXCEEDED before this answer.
    retries: int = 0


class AttestedModel:
    def __init__(self, acs: TrustedAcs, target: str, service: str, credentials: Path) -> None:
        try:
            key = (credentials / "client.key").read_bytes()
            cert = (credentials / "client.pem").read_bytes()
        except OSError as err:
            raise InferenceClientError(
                f"no client certificate in {credentials}; run `s3mlctl client-cert --name NAME "
                f"--out {credentials}`"
            ) from err
        creds = grpc.ssl_channel_credentials(acs.bundle.ca_certificate_pem.encode(), key, cert)
        options = [
            ("grpc.ssl_target_name_override", f"{service}.s3ml.local"),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        self._target, self._service = target, service
        self._channel = traced_channel(grpc.secure_channel(target, creds, options))
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _input(self, model: str) -> tuple[int, str]:
        request = pb.ModelMetadataRequest(name=model)
        try:
            meta = self._stub.ModelMetadata(request, timeout=10)
        except grpc.RpcError as err:
            details = err.details() or ""
            if "Hostname Verification" in details:
                raise InferenceClientError(
                    f"the server at {self._target} is not service '{self._service}' "
                    "(its certificate names another); check --model, --service and --target"
                ) from err
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise InferenceClientError(
                    f"model '{model}' is not served at {self._target} ({details}); "
                    "check --model and --target"
                ) from err
            meta = with_retries(lambda: self._stub.ModelMetadata(request, timeout=10))
        spec = meta.inputs[0]
        return int(spec.shape[1]), spec.datatype

    def classify(self, image: bytes, model: str, labels: list[str], top: int = 5) -> Prediction:
        try:
            rgb = imaging.decode(image)
        except imaging.ImageError as err:
            raise InferenceClientError(f"{err}; pass a photo file") from err
        size, datatype = self._input(model)
        batch = imaging.model_input(rgb, size, datatype)
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="image", datatype=datatype, shape=list(batch.shape))
        request.raw_input_contents.append(np.ascontiguousarray(batch).tobytes())
        failed: list[grpc.RpcError] = []
        started = time.perf_counter()
        response = with_retries(
            lambda: self._stub.ModelInfer(request, timeout=30), on_retry=failed.append
        )
        latency = (time.perf_counter() - started) * 1000
        raw = np.frombuffer(
            response.raw_output_contents[0], dtype=np.uint8 if datatype == "UINT8" else np.float32
        )
        scores = raw.astype(np.float32) / (256.0 if datatype == "UINT8" else 1.0)
        best = np.argsort(scores)[::-1][:top]
        return Prediction([(labels[i], float(scores[i])) for i in best], latency, len(failed))
