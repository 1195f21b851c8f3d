"""`make up`'s cluster end to end: ACS, attested replicas, HAProxy, Prometheus, demo inference.

Runs the real `up` binary twice on one state directory (the second run must
reuse the services and keys), with ports of its own, and checks that nothing
is left running afterwards.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.attest.acs_harness import srcdir

CONFIG = """
nodes: 2
models: [mobilenet_v1_int8, efficientnet_lite0_int8]
ports: {acs: 27443, frontend: 28500, replica: 30000, metrics: 31000, prometheus: 29090, verifier: 27500, agent: 27600}
replica: {pool: 1, threads: 1}
"""


def _up(state: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    binary = srcdir() / "deploy" / "local" / "up"
    return subprocess.run(
        [
            str(binary),
            "--state-dir",
            str(state),
            "--config",
            str(config),
            "--exit-after-demo",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def _leftovers(state: Path) -> list[str]:
    out = subprocess.run(
        ["/bin/ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if str(state) in line]


def test_cluster_serves_attested_inference_and_reuses_state(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    first = _up(state, config)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "provisioned service efficientnet-lite0-int8" in first.stdout
    assert "espresso" in first.stdout  # the demo photo, through HAProxy, over attested mTLS
    assert "2 emulated nodes x 2 models = 4 attested model servers" in first.stdout
    assert "SIMULATED SGX" in first.stdout
    assert "stopped every component" in first.stdout
    assert "node-0: TPM/IMA integrity verified" in first.stdout
    assert "node-1: TPM/IMA integrity verified" in first.stdout
    second = _up(state, config)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "provisioned service" not in second.stdout  # same identities and keys
    assert "espresso" in second.stdout
    assert not _leftovers(state)
    assert (state / "acs" / "admin" / "admin.key").stat().st_mode & 0o077 == 0


def test_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = _up(blocker / "state", tmp_path / "missing.yaml")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("make up: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [("nodes: 2\nmodels: [resnet]\nports: {acs: 1, frontend: 2, replica: 3, metrics: 4, prometheus: 5}\n", "unknown model 'resnet'"),
     ("nodes: [\n", "cluster.yaml"),
     ("nodes: 2\nmodels: [mobilenet_v1_int8]\nports: {acs: 1000, frontend: 2000, replica: 3000, metrics: 4000, prometheus: 3990}\n",
      "Prometheus and host agent node-0 metrics would both listen on port 3990")],
    ids=["unknown-model", "malformed-yaml", "port-clash"],
)  # fmt: skip
def test_bad_cluster_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(text)
    result = _up(tmp_path / "state", config)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]
