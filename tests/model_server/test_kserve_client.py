"""An existing KServe v2 client library (tritonclient's gRPC client) over attested mTLS.

The model server runs as its own process: tritonclient registers the same
`inference.*` protobuf names as our generated code, so the two cannot share a
process (which is exactly why the wire format, not the Python types, is what
must match).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from services.model_server import imaging
from services.model_server.zoo import calibration
from tests.attest.acs_harness import running_acs, srcdir
from tests.model_server.harness import (
    SERVICE,
    client_credentials,
    model_server_mrenclave,
    register,
    seal_zoo,
    server_args,
)

MODELS = ("mobilenet_v1_int8", "efficientnet_lite0_f32")


def test_tritonclient_over_mtls(tmp_path: Path) -> None:
    with running_acs(tmp_path) as acs:
        models_dir = tmp_path / "models"
        register(acs, seal_zoo(models_dir, MODELS), model_server_mrenclave())
        binary = srcdir() / "services" / "model_server" / "server"
        proc = subprocess.Popen(
            [str(binary), *server_args(acs, models_dir, MODELS)],
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("READY"), line
            port = int(line.split("=")[1])
            creds = client_credentials(acs, "triton-user")
            for name, data in (
                ("ca.pem", creds.ca_pem),
                ("client.key", creds.key_pem),
                ("client.pem", creds.cert_pem),
            ):
                (tmp_path / name).write_bytes(data)
            client = triton.InferenceServerClient(
                url=f"localhost:{port}",
                ssl=True,
                root_certificates=str(tmp_path / "ca.pem"),
                private_key=str(tmp_path / "client.key"),
                certificate_chain=str(tmp_path / "client.pem"),
                channel_args=[("grpc.ssl_target_name_override", f"{SERVICE}.s3ml.local")],
            )
            assert client.is_server_live()
            assert client.is_model_ready("efficientnet_lite0_f32")
            meta = client.get_model_metadata("efficientnet_lite0_f32")
            assert meta.inputs[0].datatype == "FP32"
            photo = calibration.photos()["coffee"]
            batch = imaging.model_input(photo, 224, "FP32")
            tensor = triton.InferInput("image", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = client.infer(
                "efficientnet_lite0_f32",
                [tensor],
                outputs=[triton.InferRequestedOutput("probabilities")],
            )
            probabilities = result.as_numpy("probabilities")
            assert probabilities.shape == (1, 1000)
            assert int(np.argmax(probabilities)) == 967  # espresso
            pixels = imaging.model_input(photo, 128, "UINT8")
            tensor = triton.InferInput("image", list(pixels.shape), "UINT8")
            tensor.set_data_from_numpy(pixels)
            assert (
                client.infer("mobilenet_v1_int8", [tensor]).as_numpy("probabilities").dtype
                == np.uint8
            )
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
