"""s3mlctl keygen and policy sign|submit|update|show|history|audit against a real ACS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.attest.server import DEFAULT_MANIFEST
from services.attest.stakeholder.workload import release_keys
from services.cli.s3mlctl import main
from tests.attest.acs_harness import AcsEnv, running_acs
from tests.attest.stakeholder_harness import TRAINING_MRENCLAVE

POLICY = """\
name: data_owner/training_data
version: {version}
command: python /app/upload.py
security_level: high_assurance
integrity:
  mrenclave: ["{mrenclave}"]
volumes:
  - path: /training_data
    export: [code_owner/training]
stakeholder: |
{key}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    with running_acs(tmp_path_factory.mktemp("acs")) as acs_env:
        yield acs_env


def _policy(path: Path, public: Path, version: int) -> Path:
    key = "\n".join("  " + line for line in public.read_text().splitlines())
    path.write_text(POLICY.format(version=version, mrenclave=TRAINING_MRENCLAVE.hex(), key=key))
    return path


def test_stakeholder_workflow(
    env: AcsEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path / "home")]
    trust = ["trust", "--acs", env.target, "--sim-dir", str(env.sim_dir)]
    trust += ["--mrenclave-file", str(DEFAULT_MANIFEST.with_suffix(".mrenclave"))]
    assert main(home + trust) == 0
    keys = tmp_path / "keys"
    assert main([*home, "keygen", "--out", str(keys), "--name", "data"]) == 0
    assert (keys / "data.key").stat().st_mode & 0o077 == 0
    assert main([*home, "keygen", "--out", str(keys), "--name", "mallory", "--ecdsa"]) == 0
    assert main([*home, "keygen", "--out", str(keys), "--name", "data"]) == 1  # no overwrite
    capsys.readouterr()

    v1 = _policy(tmp_path / "v1.yaml", keys / "data.pub", 1)
    assert main([*home, "policy", "submit", str(v1)]) == 1  # unsigned: no .sig yet
    assert "cannot read" in capsys.readouterr().err
    assert main([*home, "policy", "sign", str(v1), "--key", str(keys / "data.key")]) == 0
    assert main([*home, "policy", "submit", str(v1)]) == 0
    assert "data_owner/training_data version 1" in capsys.readouterr().out

    v2 = _policy(tmp_path / "v2.yaml", keys / "data.pub", 2)
    assert main([*home, "policy", "sign", str(v2), "--key", str(keys / "mallory.key")]) == 0
    assert "not the document's `stakeholder` key" in capsys.readouterr().out
    assert main([*home, "policy", "update", str(v2)]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main([*home, "policy", "sign", str(v2), "--key", str(keys / "data.key")]) == 0
    assert main([*home, "policy", "update", str(v2)]) == 0
    assert main([*home, "policy", "history", "--name", "data_owner/training_data"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out
    assert "version 2" in out
    assert main([*home, "policy", "show", "--name", "data_owner/training_data"]) == 0
    assert "export: [code_owner/training]" in capsys.readouterr().out

    platform = env.model_platform(TRAINING_MRENCLAVE)
    assert set(release_keys(env.trusted.channel, "data_owner/training_data", platform)) == {
        "/training_data"
    }
    audit = ["policy", "audit", "--name", "data_owner/training_data"]
    assert main([*home, *audit, "--key", str(keys / "data.key")]) == 0
    assert "1 release(s)" in capsys.readouterr().out
    assert main([*home, *audit, "--key", str(keys / "mallory.key")]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_invalid_policy_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a/b\nversion: 1\nsecurity_level: high_assurance\nexports: []\n")
    key = tmp_path / "k"
    assert main(["keygen", "--out", str(key)]) == 0
    assert main(["policy", "sign", str(bad), "--key", str(key / "stakeholder.key")]) == 1
    assert "unknown field policy.exports" in capsys.readouterr().err
