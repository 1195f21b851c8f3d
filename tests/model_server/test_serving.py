"""The model server on loopback over attested mTLS, with the four zoo models.

Outputs are compared with the TensorFlow (Keras) models the zoo converted, and
EfficientNet-Lite0's top-1 with the PyTorch reference (testdata/README.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import skimage.data

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from services.model_server import imaging
from services.model_server.zoo import calibration
from tests.model_server.harness import MODELS, Serving, metadata, serving

PHOTOS = calibration.photos() | {
    "motorcycle_left": skimage.data.stereo_motorcycle()[0]  # type: ignore[no-untyped-call]
}
REFERENCE = json.loads(
    (Path(__file__).with_name("testdata") / "efficientnet_lite0_torch_reference.json").read_text()
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    with serving(tmp_path_factory.mktemp("serving"), MODELS, "--max-batch", "4") as s:
        yield s


@pytest.fixture(scope="module")
def stub(env: Serving) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with env.channel() as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _spec(model: str) -> tuple[int, str]:
    meta = metadata(model)
    inp = meta["inputs"][0]  # type: ignore[index]
    return int(inp["shape"][1]), str(inp["datatype"])


def infer(
    stub: pb_grpc.GRPCInferenceServiceStub, model: str, batch: np.ndarray, **kw: object
) -> np.ndarray:
    _, datatype = _spec(model)
    request = pb.ModelInferRequest(model_name=model, id="t")
    request.inputs.add(name="image", datatype=datatype, shape=list(batch.shape))
    request.raw_input_contents.append(np.ascontiguousarray(batch).tobytes())
    response = stub.ModelInfer(request, timeout=30)
    out = np.frombuffer(
        response.raw_output_contents[0], dtype=np.uint8 if datatype == "UINT8" else np.float32
    )
    return out.reshape(list(response.outputs[0].shape))


def probabilities(model: str, out: np.ndarray) -> np.ndarray:
    return out.astype(np.float32) / 256.0 if "int8" in model else out


def _inputs(model: str, names: list[str]) -> np.ndarray:
    size, datatype = _spec(model)
    return np.concatenate([imaging.model_input(PHOTOS[n], size, datatype) for n in names])


def test_health_and_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5).name == "s3ml-model-server"
    for model in MODELS:
        assert stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=5).ready
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=5)
        assert meta.versions == ["1"]
        assert meta.platform == "tflite"
        assert meta.inputs[0].name == "image"
        assert list(meta.outputs[0].shape) == [-1, 1000]


@pytest.fixture(scope="module")
def keras_reference() -> dict[str, object]:
    from services.model_server.zoo.build import ZOO, keras_model  # noqa: PLC0415  (TensorFlow is slow to import)

    return {
        "mobilenet_v1": keras_model(ZOO["mobilenet_v1_f32"]),
        "efficientnet_lite0": keras_model(ZOO["efficientnet_lite0_f32"]),
    }


@pytest.mark.parametrize("model", MODELS)
def test_outputs_match_tensorflow(
    stub: pb_grpc.GRPCInferenceServiceStub, keras_reference: dict[str, object], model: str
) -> None:
    names = ["chelsea", "coffee"]
    served = probabilities(model, infer(stub, model, _inputs(model, names)))
    size, _ = _spec(model)
    float_inputs = np.concatenate([imaging.model_input(PHOTOS[n], size, "FP32") for n in names])
    family = "efficientnet_lite0" if model.startswith("efficientnet") else "mobilenet_v1"
    expected = np.asarray(keras_reference[family](float_inputs, training=False))  # type: ignore[operator]
    if "int8" in model:
        # Dequantized output within a few quantization steps of the float model.
        assert np.max(np.abs(served - expected)) <= 0.06
    else:
        np.testing.assert_allclose(served, expected, atol=2e-5, rtol=1e-3)


def test_efficientnet_top1_matches_pytorch(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    agree_int8 = 0
    images = [img for img in REFERENCE["images"] if img["name"] in PHOTOS]
    assert len(images) == 6
    for image in images:
        torch_top1 = image["top5"][0]
        f32 = infer(
            stub, "efficientnet_lite0_f32", _inputs("efficientnet_lite0_f32", [image["name"]])
        )
        assert int(np.argmax(f32[0])) == torch_top1, image["name"]
        int8 = infer(
            stub, "efficientnet_lite0_int8", _inputs("efficientnet_lite0_int8", [image["name"]])
        )
        agree_int8 += int(np.argmax(int8[0])) == torch_top1
    rate = agree_int8 / len(images)
    print(f"int8 top-1 agreement with PyTorch: {agree_int8}/{len(images)} = {rate:.0%}")
    assert rate > 0.5  # most of them; the misses are low-confidence photos


def test_typed_contents_equal_raw(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    for model in ("mobilenet_v1_f32", "mobilenet_v1_int8"):
        batch = _inputs(model, ["coffee"])
        raw = infer(stub, model, batch)
        _, datatype = _spec(model)
        request = pb.ModelInferRequest(model_name=model)
        tensor = request.inputs.add(name="image", datatype=datatype, shape=list(batch.shape))
        if datatype == "FP32":
            tensor.contents.fp32_contents.extend(batch.ravel().tolist())
        else:
            tensor.contents.uint_contents.extend(batch.ravel().tolist())
        response = stub.ModelInfer(request, timeout=30)
        typed = np.frombuffer(response.raw_output_contents[0], dtype=raw.dtype).reshape(raw.shape)
        np.testing.assert_array_equal(typed, raw)


def test_batch_of_three(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    names = ["chelsea", "coffee", "rocket"]
    batched = infer(stub, "efficientnet_lite0_f32", _inputs("efficientnet_lite0_f32", names))
    singles = [
        infer(stub, "efficientnet_lite0_f32", _inputs("efficientnet_lite0_f32", [n]))[0]
        for n in names
    ]
    np.testing.assert_allclose(batched, np.stack(singles), atol=1e-5)


def _request(
    model: str = "mobilenet_v1_int8",
    shape: list[int] | None = None,
    datatype: str = "UINT8",
    raw: bytes | None = None,
    name: str = "image",
) -> pb.ModelInferRequest:
    shape = shape or [1, 128, 128, 3]
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(
        raw if raw is not None else bytes(int(np.prod(shape)) * (4 if datatype == "FP32" else 1))
    )
    return request


def _with_output(name: str) -> pb.ModelInferRequest:
    request = _request()
    request.outputs.add(name=name)
    return request


def _two_raws() -> pb.ModelInferRequest:
    request = _request()
    request.raw_input_contents.append(b"x")
    return request


def _short_contents() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="mobilenet_v1_int8")
    request.inputs.add(
        name="image", datatype="UINT8", shape=[1, 128, 128, 3]
    ).contents.uint_contents.extend([1, 2, 3])
    return request


BAD = [
    ("unknown-model", pb.ModelInferRequest(model_name="resnet"), grpc.StatusCode.NOT_FOUND, "not served"),
    ("unknown-version", pb.ModelInferRequest(model_name="mobilenet_v1_int8", model_version="9"), grpc.StatusCode.NOT_FOUND, "no version"),
    ("wrong-datatype", _request(datatype="FP32"), grpc.StatusCode.INVALID_ARGUMENT, "'image': datatype FP32, expected UINT8"),
    ("wrong-shape", _request(shape=[1, 64, 64, 3]), grpc.StatusCode.INVALID_ARGUMENT, "'image': shape [1, 64, 64, 3], expected [N, 128, 128, 3]"),
    ("wrong-byte-size", _request(raw=b"\0" * 10), grpc.StatusCode.INVALID_ARGUMENT, "'image': 10 bytes, expected 49152"),
    ("batch-too-large", _request(shape=[5, 128, 128, 3]), grpc.StatusCode.INVALID_ARGUMENT, "batch size 5 outside 1..4"),
    ("unknown-input", _request(name="pixels"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'pixels'"),
    ("missing-input", pb.ModelInferRequest(model_name="mobilenet_v1_int8"), grpc.StatusCode.INVALID_ARGUMENT, "missing input 'image'"),
    ("unknown-output", _with_output("logits"), grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'logits'"),
    ("raw-count", _two_raws(), grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents has 2 entries"),
    ("contents-count", _short_contents(), grpc.StatusCode.INVALID_ARGUMENT, "3 values in contents, expected 49152"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "code", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input(
    stub: pb_grpc.GRPCInferenceServiceStub,
    request_: pb.ModelInferRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_, timeout=10)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    # One bad request never takes the server down.
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live


def test_message_too_large(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    huge = _request(shape=[1, 128, 128, 3], raw=bytes(17 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(huge, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_deadline_honoured(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    batch = _inputs("efficientnet_lite0_f32", ["coffee"] * 4)
    request = _request("efficientnet_lite0_f32", list(batch.shape), "FP32", batch.tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_client_without_acs_certificate_refused(env: Serving) -> None:
    anonymous = grpc.ssl_channel_credentials(env.client.ca_pem)
    with env.channel(anonymous) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_overload_is_resource_exhausted(tmp_path: Path) -> None:
    with (
        serving(
            tmp_path,
            ("efficientnet_lite0_f32",),
            "--pool",
            "1",
            "--max-queue",
            "0",
            "--workers",
            "8",
        ) as s,
        s.channel() as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        batch = _inputs("efficientnet_lite0_f32", ["coffee"] * 4)
        codes: list[grpc.StatusCode] = []
        lock = threading.Lock()

        def call() -> None:
            try:
                infer(stub, "efficientnet_lite0_f32", batch)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert grpc.StatusCode.OK in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        infer(stub, "efficientnet_lite0_f32", batch[:1])  # still serving
