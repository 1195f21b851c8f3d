"""A replica that cannot be trusted with its models does not start, and says why."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from services.model_server import config as server_config
from services.model_server.repository import ModelLoadError, load, seal_model
from services.model_server.server import StartupError, start
from services.volume.volume import BLOBS
from tests.model_server.harness import ZOO, register, seal_zoo, server_args, serving

MODEL = ("mobilenet_v1_int8",)


def test_tampered_model_refused_at_load(tmp_path: Path) -> None:
    with serving(tmp_path, MODEL, start_server=False) as s:
        blobs = (s.models_dir / MODEL[0] / "1" / BLOBS).iterdir()
        weights = max(blobs, key=lambda p: p.stat().st_size)  # names are hidden; sizes are not
        blob = bytearray(weights.read_bytes())
        blob[len(blob) // 2] ^= 0x40
        weights.write_bytes(bytes(blob))
        with pytest.raises(
            StartupError,
            match=r"mobilenet_v1_int8/1 refused: file 'model.tflite': chunk \d+ of \d+ failed authentication",
        ):
            start(server_config.parse(server_args(s.acs, s.models_dir, MODEL)))


def test_model_swapped_for_another_refused(tmp_path: Path) -> None:
    with serving(tmp_path, ("mobilenet_v1_int8", "mobilenet_v1_f32"), start_server=False) as s:
        a = s.models_dir / "mobilenet_v1_int8" / "1"
        shutil.rmtree(a)
        shutil.copytree(s.models_dir / "mobilenet_v1_f32" / "1", a)
        with pytest.raises(
            StartupError, match=r"mobilenet_v1_int8/1 refused: .*not this volume's key"
        ):
            start(server_config.parse(server_args(s.acs, s.models_dir, MODEL)))


def test_model_moved_under_another_name_refused_even_with_a_shared_key(tmp_path: Path) -> None:
    """A model owner reusing one key for two models: the identity inside the volume still binds."""
    key = os.urandom(32)
    seal_model(
        ZOO / "mobilenet_v1_f32.tflite", ZOO / "mobilenet_v1_f32.json", tmp_path / "src", key
    )
    (tmp_path / "models" / "mobilenet_v1_int8").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "src" / "mobilenet_v1_f32" / "1", tmp_path / "models" / "mobilenet_v1_int8" / "1"
    )
    with pytest.raises(ModelLoadError, match="its volume holds mobilenet_v1_f32/1"):
        load(tmp_path / "models", "mobilenet_v1_int8", "1", key, 1, 1)


def test_missing_model_volume_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="mobilenet_v1_int8/1: no model volume"):
        load(tmp_path, "mobilenet_v1_int8", "1", os.urandom(32), 1, 1)


def test_failed_attestation_refuses_to_start(tmp_path: Path) -> None:
    from tests.attest.acs_harness import running_acs  # noqa: PLC0415

    with running_acs(tmp_path) as acs:
        models_dir = tmp_path / "models"
        register(acs, seal_zoo(models_dir, MODEL), hashlib.sha256(b"another build").digest())
        with pytest.raises(
            StartupError, match=r"refusing to start: PERMISSION_DENIED: .*not allowed by the policy"
        ):
            start(server_config.parse(server_args(acs, models_dir, MODEL)))


def test_model_without_released_key_refused(tmp_path: Path) -> None:
    with serving(tmp_path, MODEL, start_server=False) as s:
        seal_zoo(s.models_dir, ("mobilenet_v1_f32",))
        args = server_args(s.acs, s.models_dir, ("mobilenet_v1_int8", "mobilenet_v1_f32"))
        with pytest.raises(StartupError, match="released no key for model 'mobilenet_v1_f32'"):
            start(server_config.parse(args))
