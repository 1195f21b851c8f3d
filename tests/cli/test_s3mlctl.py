"""s3mlctl against a real ACS on loopback: trust, register, inspect, audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.attest.server import DEFAULT_MANIFEST
from services.cli.s3mlctl import main
from tests.attest.acs_harness import MODEL_MRENCLAVE, AcsEnv, running_acs


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    with running_acs(tmp_path_factory.mktemp("acs")) as acs_env:
        yield acs_env


def _trust(env: AcsEnv, home: Path, *extra: str) -> int:
    return main(
        [
            "--home", str(home), "trust",
            "--acs", env.target,
            "--admin", f"127.0.0.1:{env.running.admin_port}",
            "--admin-dir", str(env.state / "admin"),
            "--sim-dir", str(env.sim_dir),
            *extra,
        ]
    )  # fmt: skip


def test_trust_register_get_audit(
    env: AcsEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mrenclave_file = str(DEFAULT_MANIFEST.with_suffix(".mrenclave"))
    assert _trust(env, tmp_path, "--mrenclave-file", mrenclave_file) == 0
    assert "verified" in capsys.readouterr().out
    assert (tmp_path / "profile.json").stat().st_mode & 0o077 == 0
    home = ["--home", str(tmp_path)]
    register = ["service", "register", "--name", "cli-model", "--dns", "cli-model.local"]
    register += ["--mrenclave", MODEL_MRENCLAVE.hex(), "--secret", "model/key"]
    assert main(home + register) == 0
    assert main([*home, "service", "get", "--name", "cli-model"]) == 0
    out = capsys.readouterr().out
    assert "none yet" in out
    assert "model/key" in out
    assert main([*home, "audit", "--subject", "cli-model"]) == 0
    assert "service.register" in capsys.readouterr().out
    assert main([*home, "audit", "--verify"]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    assert main([*home, "client-cert", "--name", "alice", "--out", str(tmp_path / "alice")]) == 0
    assert (tmp_path / "alice" / "client.key").stat().st_mode & 0o077 == 0
    assert b"BEGIN CERTIFICATE" in (tmp_path / "alice" / "client.pem").read_bytes()


def test_trust_refuses_wrong_measurement(
    env: AcsEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _trust(env, tmp_path, "--mrenclave", "00" * 32) == 1
    err = capsys.readouterr().err
    assert err.startswith("s3mlctl: ")
    assert "not the pinned one" in err
    assert not (tmp_path / "profile.json").exists()


def test_commands_without_profile_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "audit"]) == 1
    assert "run `s3mlctl trust" in capsys.readouterr().err


def test_unknown_service_is_one_line(
    env: AcsEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mrenclave_file = str(DEFAULT_MANIFEST.with_suffix(".mrenclave"))
    assert _trust(env, tmp_path, "--mrenclave-file", mrenclave_file) == 0
    assert main(["--home", str(tmp_path), "service", "get", "--name", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "s3mlctl: NOT_FOUND: service 'nope' is not registered"


def test_sim_init_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "init", "--dir", str(tmp_path / "sim")]) == 0
    first = capsys.readouterr().out
    assert "SIMULATED" in first
    assert main(["sim", "init", "--dir", str(tmp_path / "sim")]) == 0
    assert "keeping it" in capsys.readouterr().out
    assert (tmp_path / "sim" / "root.key").stat().st_mode & 0o077 == 0
