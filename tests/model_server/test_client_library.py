"""The attested inference client library against a real ACS and model server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from services.client.inference import AttestedModel, InferenceClientError
from services.model_server.zoo import calibration
from tests.model_server.harness import SERVICE, ZOO, Serving, serving

MODEL = "efficientnet_lite0_f32"
LABELS = (ZOO / "imagenet_labels.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serving, Path]]:
    base = tmp_path_factory.mktemp("client")
    with serving(base, (MODEL,)) as s:
        creds = base / "creds"
        creds.mkdir()
        (creds / "client.key").write_bytes(s.client.key_pem)
        (creds / "client.pem").write_bytes(s.client.cert_pem)
        yield s, creds


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(calibration.photos()["coffee"]).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_classifies_a_photo(env: tuple[Serving, Path]) -> None:
    s, creds = env
    model = AttestedModel(s.acs.trusted, s.target, SERVICE, creds)
    result = model.classify(_jpeg(), MODEL, LABELS)
    model.close()
    assert result.labels[0][0] == "espresso"
    assert result.latency_ms > 0


@pytest.mark.parametrize(
    ("service", "model", "image", "message"),
    [
        ("other-service", MODEL, None, "is not service 'other-service'"),
        (SERVICE, "resnet", None, r"model 'resnet' is not served .*served: efficientnet_lite0_f32"),
        (SERVICE, MODEL, b"not an image", "not a readable image"),
    ],
    ids=["wrong-service", "unknown-model", "not-an-image"],
)
def test_errors_say_what_to_do(
    env: tuple[Serving, Path], service: str, model: str, image: bytes | None, message: str
) -> None:
    s, creds = env
    client = AttestedModel(s.acs.trusted, s.target, service, creds)
    with pytest.raises(InferenceClientError, match=message):
        client.classify(image or _jpeg(), model, LABELS)
    client.close()


def test_missing_credentials_say_how_to_get_them(env: tuple[Serving, Path], tmp_path: Path) -> None:
    s, _ = env
    with pytest.raises(InferenceClientError, match="s3mlctl client-cert"):
        AttestedModel(s.acs.trusted, s.target, SERVICE, tmp_path)
