"""Bad input to StakeholderPolicies on a real ACS: each rejected, nothing changed."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from s3ml.attest.v1 import audit_pb2, audit_pb2_grpc, registry_pb2, stakeholder_pb2
from services.attest.stakeholder.service import HostEvidence
from services.attest.stakeholder.workload import nonce, release_keys
from tests.attest.acs_harness import AcsEnv, running_acs
from tests.attest.stakeholder_harness import (
    GPU_CODE_HASH,
    GPU_HOST,
    TRAINING_MRENCLAVE,
    UPLOAD_MRENCLAVE,
    Stakeholder,
    VerdictSigner,
    policies,
)

DATA = Stakeholder("data_owner")
CODE = Stakeholder.ecdsa("code_owner")
STRANGER = Stakeholder("stranger")
VERIFIER = VerdictSigner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    base = tmp_path_factory.mktemp("acs")
    key = VERIFIER.write_public(Path(base) / "verifier.pem")
    with running_acs(base, ("--verdict-key", str(key), "--verdict-max-age", "60")) as acs_env:
        stub = policies(acs_env.trusted.channel)
        stub.SubmitPolicy(
            DATA.signed(
                DATA.policy(
                    "training_data",
                    volumes=[
                        {"path": "/data", "export": ["code_owner/training", "code_owner/gpu"]}
                    ],
                )
            ),
            timeout=10,
        )
        yield acs_env


def _code(event: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return event.value.code()


def _versions(env: AcsEnv, name: str) -> list[int]:
    try:
        history = policies(env.trusted.channel).PolicyHistory(
            stakeholder_pb2.PolicyHistoryRequest(name=name), timeout=10
        )
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return []
    return [v.version for v in history.versions]


def _refused(
    env: AcsEnv,
    request: stakeholder_pb2.SubmitPolicyRequest,
    code: grpc.StatusCode,
    update: bool = False,
) -> str:
    stub = policies(env.trusted.channel)
    call = stub.UpdatePolicy if update else stub.SubmitPolicy
    with pytest.raises(grpc.RpcError) as event:
        call(request, timeout=10)
    assert _code(event) == code, event.value.details()
    return str(event.value.details())


def test_unsigned_policy(env: AcsEnv) -> None:
    document = CODE.policy("unsigned")
    _refused(
        env, stakeholder_pb2.SubmitPolicyRequest(document=document), grpc.StatusCode.UNAUTHENTICATED
    )
    assert _versions(env, "code_owner/unsigned") == []


def test_signature_by_another_key(env: AcsEnv) -> None:
    document = CODE.policy("forged")
    request = stakeholder_pb2.SubmitPolicyRequest(
        document=document, signature=STRANGER.sign(document)
    )
    _refused(env, request, grpc.StatusCode.UNAUTHENTICATED)
    assert _versions(env, "code_owner/forged") == []


def test_signature_over_other_content(env: AcsEnv) -> None:
    signed = CODE.signed(CODE.policy("tampered"))
    tampered = signed.document.replace(b"python /app/main.py", b"python /app/evil.py")
    request = stakeholder_pb2.SubmitPolicyRequest(document=tampered, signature=signed.signature)
    _refused(env, request, grpc.StatusCode.UNAUTHENTICATED)
    assert _versions(env, "code_owner/tampered") == []


def test_name_squatting(env: AcsEnv) -> None:
    squatter = Stakeholder("data_owner")  # same stakeholder name, another key
    _refused(env, squatter.signed(squatter.policy("training_data")), grpc.StatusCode.ALREADY_EXISTS)
    detail = _refused(
        env, squatter.signed(squatter.policy("new_asset")), grpc.StatusCode.ALREADY_EXISTS
    )
    assert "belongs to another key" in detail
    assert _versions(env, "data_owner/training_data") == [1]
    assert _versions(env, "data_owner/new_asset") == []


def test_resubmitting_an_existing_name_is_refused_even_by_its_owner(env: AcsEnv) -> None:
    _refused(env, DATA.signed(DATA.policy("training_data")), grpc.StatusCode.ALREADY_EXISTS)


def test_version_rollback_and_replay(env: AcsEnv) -> None:
    stub = policies(env.trusted.channel)
    stub.SubmitPolicy(CODE.signed(CODE.policy("versions")), timeout=10)
    v2 = CODE.signed(CODE.policy("versions", version=2, command="python /app/v2.py"))
    stub.UpdatePolicy(v2, timeout=10)
    _refused(env, v2, grpc.StatusCode.FAILED_PRECONDITION, update=True)  # replay
    rollback = CODE.signed(CODE.policy("versions", version=1))
    _refused(env, rollback, grpc.StatusCode.FAILED_PRECONDITION, update=True)
    skip = CODE.signed(CODE.policy("versions", version=4))
    _refused(env, skip, grpc.StatusCode.FAILED_PRECONDITION, update=True)
    new_at_2 = CODE.signed(CODE.policy("v2first", version=2))
    _refused(env, new_at_2, grpc.StatusCode.FAILED_PRECONDITION)
    assert _versions(env, "code_owner/versions") == [1, 2]
    latest = stub.GetPolicy(
        stakeholder_pb2.GetPolicyRequest(name="code_owner/versions"), timeout=10
    )
    assert latest.version == 2
    assert latest.document == v2.document


def test_update_signed_by_a_stranger(env: AcsEnv) -> None:
    policies(env.trusted.channel).SubmitPolicy(CODE.signed(CODE.policy("guarded")), timeout=10)
    hijack = CODE.policy("guarded", version=2, stakeholder=STRANGER.public_pem)
    _refused(env, STRANGER.signed(hijack), grpc.StatusCode.PERMISSION_DENIED, update=True)
    assert _versions(env, "code_owner/guarded") == [1]


def test_import_without_matching_export(env: AcsEnv) -> None:
    for volume in (
        {"path": "/data", "import": "data_owner/training_data"},  # not exported to this name
        {"path": "/x", "import": "data_owner/training_data", "from": "/missing"},
        {"path": "/y", "import": "data_owner/nothing_here"},
    ):
        document = CODE.policy("not_granted", volumes=[volume])
        _refused(env, CODE.signed(document), grpc.StatusCode.FAILED_PRECONDITION)
    assert _versions(env, "code_owner/not_granted") == []


def test_cycle_of_references(env: AcsEnv) -> None:
    stub = policies(env.trusted.channel)
    a = Stakeholder("cycle_a")
    b = Stakeholder("cycle_b")
    stub.SubmitPolicy(
        a.signed(a.policy("x", volumes=[{"path": "/out", "export": ["cycle_b/y"]}])), timeout=10
    )
    b_volumes = [
        {"path": "/in", "import": "cycle_a/x", "from": "/out"},
        {"path": "/out", "export": ["cycle_a/x"]},
    ]
    stub.SubmitPolicy(b.signed(b.policy("y", volumes=b_volumes)), timeout=10)
    a_v2 = a.policy(
        "x",
        version=2,
        volumes=[
            {"path": "/out", "export": ["cycle_b/y"]},
            {"path": "/in", "import": "cycle_b/y", "from": "/out"},
        ],
    )
    detail = _refused(env, a.signed(a_v2), grpc.StatusCode.FAILED_PRECONDITION, update=True)
    assert "cycle_a/x -> cycle_b/y -> cycle_a/x" in detail
    assert _versions(env, "cycle_a/x") == [1]


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        (b"name: [unclosed\n", "not valid YAML"),
        (b"\xff\xfe not utf-8", "not valid YAML"),
        (b"- just\n- a list\n", "must be a mapping"),
        (b"name: a/b\nname: a/c\n", "duplicate field"),
    ],
)
def test_malformed_yaml(env: AcsEnv, document: bytes, needle: str) -> None:
    request = stakeholder_pb2.SubmitPolicyRequest(document=document, signature=b"x" * 64)
    assert needle in _refused(env, request, grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"exports": ["x/y"]}, "unknown field policy.exports"),
        ({"integrity": {"mrenclave": [UPLOAD_MRENCLAVE.hex()], "sha1": "00"}}, "integrity.sha1"),
        ({"volumes": [{"path": "/d", "mode": "rw"}]}, "volumes[0].mode"),
        ({"security_level": "medium"}, "security_level"),
        ({"integrity": {"mrenclave": [12345]}}, "quoted hex"),
    ],
)
def test_unknown_or_invalid_fields(env: AcsEnv, fields: dict[str, Any], needle: str) -> None:
    document = CODE.policy("unknown", **fields)
    request = stakeholder_pb2.SubmitPolicyRequest(document=document, signature=b"s" * 64)
    assert needle in _refused(env, request, grpc.StatusCode.INVALID_ARGUMENT)
    assert _versions(env, "code_owner/unknown") == []


def _releases(env: AcsEnv) -> list[str]:
    events = audit_pb2_grpc.AuditStub(env.admin).QueryAudit(
        audit_pb2.QueryAuditRequest(action_prefix="key.release", limit=1000), timeout=10
    )
    return [e.subject for e in events.events]


def test_key_request_from_a_wrong_measurement(env: AcsEnv) -> None:
    document = CODE.policy(
        "training",
        integrity={"mrenclave": [TRAINING_MRENCLAVE.hex()]},
        volumes=[{"path": "/data", "import": "data_owner/training_data"}],
    )
    policies(env.trusted.channel).SubmitPolicy(CODE.signed(document), timeout=10)
    before = _releases(env)
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.trusted.channel, "code_owner/training", platform=env.model_platform())
    assert _code(event) == grpc.StatusCode.PERMISSION_DENIED
    assert "not allowed by the policy" in str(event.value.details())
    with pytest.raises(grpc.RpcError) as event:  # no evidence at all
        release_keys(env.trusted.channel, "code_owner/training")
    assert _code(event) == grpc.StatusCode.PERMISSION_DENIED
    assert _releases(env) == before
    keys = release_keys(
        env.trusted.channel, "code_owner/training", platform=env.model_platform(TRAINING_MRENCLAVE)
    )
    assert set(keys) == {"/data"}
    assert len(keys["/data"].key) == 32
    assert _releases(env) == [*before, "code_owner/training"]


def _gpu_policy(env: AcsEnv) -> str:
    name = "code_owner/gpu"
    if not _versions(env, name):
        document = CODE.policy(
            "gpu",
            security_level="high_integrity",
            integrity={"code_hash": GPU_CODE_HASH.hex()},
            operating_system={"hosts": [GPU_HOST], "runtime_policy": "gpu-nodes"},
            volumes=[{"path": "/data", "import": "data_owner/training_data"}],
        )
        policies(env.trusted.channel).SubmitPolicy(CODE.signed(document), timeout=10)
    return name


@pytest.mark.parametrize(
    ("verdict", "code_hash", "code", "needle"),
    [
        (None, GPU_CODE_HASH, grpc.StatusCode.FAILED_PRECONDITION, "fresh passing verdict"),
        (VERIFIER.verdict(age=120), GPU_CODE_HASH, grpc.StatusCode.FAILED_PRECONDITION, "stale"),
        (
            VERIFIER.verdict(validity=-1),
            GPU_CODE_HASH,
            grpc.StatusCode.FAILED_PRECONDITION,
            "stale",
        ),
        (
            VERIFIER.verdict(trusted=False),
            GPU_CODE_HASH,
            grpc.StatusCode.FAILED_PRECONDITION,
            "failed",
        ),
        (
            VERIFIER.verdict(host="other-node"),
            GPU_CODE_HASH,
            grpc.StatusCode.PERMISSION_DENIED,
            "other-node",
        ),
        (
            VerdictSigner().verdict(),
            GPU_CODE_HASH,
            grpc.StatusCode.PERMISSION_DENIED,
            "not signed by",
        ),
        (VERIFIER.verdict(), bytes(32), grpc.StatusCode.PERMISSION_DENIED, "code hash"),
    ],
)
def test_high_integrity_needs_a_fresh_passing_verdict(
    env: AcsEnv, verdict: bytes | None, code_hash: bytes, code: grpc.StatusCode, needle: str
) -> None:
    name = _gpu_policy(env)
    before = _releases(env)
    host = None if verdict is None else HostEvidence(verdict, code_hash)
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.trusted.channel, name, host=host)
    assert _code(event) == code
    assert needle in str(event.value.details())
    assert _releases(env) == before


def test_high_integrity_release_with_a_fresh_verdict(env: AcsEnv) -> None:
    name = _gpu_policy(env)
    keys = release_keys(
        env.trusted.channel, name, host=HostEvidence(VERIFIER.verdict(), GPU_CODE_HASH)
    )
    assert keys["/data"].access == "read"
    assert keys["/data"].volume_policy == "data_owner/training_data"


def test_replayed_release_nonce_is_refused(env: AcsEnv) -> None:
    name = _gpu_policy(env)
    fresh = nonce(env.trusted.channel, name)
    request = stakeholder_pb2.ReleaseKeysRequest(
        policy=name,
        nonce=fresh,
        workload_public_key=b"",
        host=stakeholder_pb2.HostEvidence(
            signed_verdict=VERIFIER.verdict(), code_hash=GPU_CODE_HASH
        ),
    )
    stub = policies(env.trusted.channel)
    with pytest.raises(grpc.RpcError) as event:
        stub.ReleaseKeys(request, timeout=10)
    assert _code(event) == grpc.StatusCode.INVALID_ARGUMENT  # no workload key: nothing to seal to
    with pytest.raises(grpc.RpcError) as event:
        stub.ReleaseKeys(request, timeout=10)
    assert _code(event) == grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in str(event.value.details())


def test_revoked_measurement_gets_no_keys(env: AcsEnv) -> None:
    measurement = hashlib.sha256(b"code owner: build with a known flaw").digest()
    document = CODE.policy(
        "flawed", integrity={"mrenclave": [measurement.hex()]}, volumes=[{"path": "/out"}]
    )
    policies(env.trusted.channel).SubmitPolicy(CODE.signed(document), timeout=10)
    platform = env.model_platform(measurement)
    assert set(release_keys(env.trusted.channel, "code_owner/flawed", platform)) == {"/out"}
    env.registry.RevokeMeasurement(
        registry_pb2.RevokeMeasurementRequest(mrenclave=measurement, reason="CVE"), timeout=10
    )
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.trusted.channel, "code_owner/flawed", platform)
    assert _code(event) == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in str(event.value.details())


def test_host_cannot_forge_or_move_stored_policies(env: AcsEnv) -> None:
    """The host can write the database file; a moved sealed record fails to open."""
    stub = policies(env.trusted.channel)
    stub.SubmitPolicy(CODE.signed(CODE.policy("sealed")), timeout=10)
    stub.UpdatePolicy(CODE.signed(CODE.policy("sealed", version=2, command="v2")), timeout=10)
    prefix = "policy/code_owner/sealed/v/"
    with sqlite3.connect(env.state / "acs.db") as db:
        (old,) = db.execute(
            "SELECT value FROM kv WHERE key = ?", (prefix + "0" * 11 + "1",)
        ).fetchone()
        db.execute("UPDATE kv SET value = ? WHERE key = ?", (old, prefix + "0" * 11 + "2"))
        plain = b'{"name": "code_owner/sealed", "version": 2}'
        db.execute(
            "UPDATE kv SET value = ? WHERE key = ?", (plain, "policy/code_owner/sealed/head")
        )
    with pytest.raises(grpc.RpcError) as event:
        stub.GetPolicy(stakeholder_pb2.GetPolicyRequest(name="code_owner/sealed"), timeout=10)
    assert _code(event) == grpc.StatusCode.DATA_LOSS
    with pytest.raises(grpc.RpcError) as event:
        stub.GetPolicy(
            stakeholder_pb2.GetPolicyRequest(name="code_owner/sealed", version=2), timeout=10
        )
    assert _code(event) == grpc.StatusCode.DATA_LOSS
