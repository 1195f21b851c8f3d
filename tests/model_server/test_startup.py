"""A replica that cannot be trusted with its models does not start, and says why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.model_server import config as server_config
from services.model_server.repository import SEALED
from services.model_server.server import StartupError, start
from tests.model_server.harness import register, seal_zoo, server_args, serving

MODEL = ("mobilenet_v1_int8",)


def test_tampered_model_refused_at_load(tmp_path: Path) -> None:
    with serving(tmp_path, MODEL, start_server=False) as s:
        sealed = s.models_dir / MODEL[0] / "1" / SEALED
        blob = bytearray(sealed.read_bytes())
        blob[len(blob) // 2] ^= 0x40
        sealed.write_bytes(bytes(blob))
        with pytest.raises(
            StartupError, match=r"mobilenet_v1_int8/1 refused: .*authentication failed"
        ):
            start(server_config.parse(server_args(s.acs, s.models_dir, MODEL)))


def test_model_swapped_for_another_refused(tmp_path: Path) -> None:
    with serving(tmp_path, ("mobilenet_v1_int8", "mobilenet_v1_f32"), start_server=False) as s:
        a = s.models_dir / "mobilenet_v1_int8" / "1" / SEALED
        b = s.models_dir / "mobilenet_v1_f32" / "1" / SEALED
        a.write_bytes(b.read_bytes())  # the right key would still be wrong: identity is bound
        with pytest.raises(StartupError, match="authentication failed"):
            start(server_config.parse(server_args(s.acs, s.models_dir, MODEL)))


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
