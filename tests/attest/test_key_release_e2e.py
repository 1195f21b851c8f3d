"""Acceptance: three stakeholders, one real ACS on loopback, keys only to attested workloads.

The data owner exports its training data to the code owner's training
policy; the code owner exports the trained model to the model owner's
serving policy. Workloads are simulated SGX enclaves (real DCAP quotes under
the simulated root) and must attest for every release; the audit log then
shows exactly the releases that happened.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import audit_pb2, audit_pb2_grpc, stakeholder_pb2, types_pb2
from services.attest.appraisal import binding
from services.attest.stakeholder.signature import public_der
from services.attest.stakeholder.workload import nonce, release_keys
from tests.attest.acs_harness import AcsEnv, running_acs
from tests.attest.stakeholder_harness import (
    SERVING_MRENCLAVE,
    TRAINING_MRENCLAVE,
    UPLOAD_MRENCLAVE,
    Stakeholder,
    policies,
)

DATA = Stakeholder("data_owner")
CODE = Stakeholder.ecdsa("code_owner")
MODEL = Stakeholder("model_owner")
STRANGER = Stakeholder("mallory")
TRAINING = "code_owner/training"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcsEnv]:
    with running_acs(tmp_path_factory.mktemp("acs")) as acs_env:
        stub = policies(acs_env.trusted.channel)
        data = DATA.policy(
            "training_data",
            integrity={"mrenclave": [UPLOAD_MRENCLAVE.hex()]},
            volumes=[{"path": "/training_data", "export": TRAINING}],
        )
        code = CODE.policy(
            "training",
            command="python /app/training.py",
            integrity={"mrenclave": [TRAINING_MRENCLAVE.hex()]},
            volumes=[
                {"path": "/training_data", "import": "data_owner/training_data"},
                {"path": "/code"},
                {"path": "/model", "export": ["model_owner/serving"]},
            ],
        )
        model = MODEL.policy(
            "serving",
            integrity={"mrenclave": [SERVING_MRENCLAVE.hex()]},
            volumes=[{"path": "/models/trained", "import": TRAINING, "from": "/model"}],
        )
        for stakeholder, document in ((DATA, data), (CODE, code), (MODEL, model)):
            accepted = stub.SubmitPolicy(stakeholder.signed(document), timeout=10)
            assert accepted.version == 1
        yield acs_env


def _release_events(env: AcsEnv) -> list[types_pb2.AuditEvent]:
    response = audit_pb2_grpc.AuditStub(env.admin).QueryAudit(
        audit_pb2.QueryAuditRequest(action_prefix="key.release", limit=1000), timeout=10
    )
    return list(response.events)


def test_three_stakeholders_and_attested_release(env: AcsEnv) -> None:
    channel = env.trusted.channel
    assert _release_events(env) == []

    # A workload with another measurement gets nothing, with or without a quote.
    for platform in (env.model_platform(), env.model_platform(SERVING_MRENCLAVE), None):
        with pytest.raises(grpc.RpcError) as event:
            release_keys(channel, TRAINING, platform=platform)
        assert event.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _release_events(env) == []

    # The data owner's upload enclave writes the data volume with its key.
    uploader = release_keys(
        channel, "data_owner/training_data", env.model_platform(UPLOAD_MRENCLAVE)
    )
    assert {k: v.access for k, v in uploader.items()} == {"/training_data": "write"}

    # The code owner's training enclave attests and gets exactly its volumes.
    training = release_keys(channel, TRAINING, env.model_platform(TRAINING_MRENCLAVE))
    assert {k: (v.volume_policy, v.access) for k, v in training.items()} == {
        "/training_data": ("data_owner/training_data", "read"),
        "/code": (TRAINING, "write"),
        "/model": (TRAINING, "write"),
    }
    assert training["/training_data"].key == uploader["/training_data"].key
    assert len({v.key for v in training.values()}) == 3
    assert all(len(v.key) == 32 for v in training.values())

    # The model owner's serving enclave reads the trained model, nothing else.
    serving = release_keys(channel, "model_owner/serving", env.model_platform(SERVING_MRENCLAVE))
    assert set(serving) == {"/models/trained"}
    assert serving["/models/trained"].key == training["/model"].key

    # Keys are stable across attestations (volumes stay readable).
    again = release_keys(channel, TRAINING, env.model_platform(TRAINING_MRENCLAVE))
    assert again["/code"].key == training["/code"].key

    events = _release_events(env)
    assert [e.subject for e in events] == [
        "data_owner/training_data",
        TRAINING,
        "model_owner/serving",
        TRAINING,
    ]
    assert events[1].mrenclave_hex == TRAINING_MRENCLAVE.hex()
    assert sorted(events[1].secret_names) == [
        "code_owner/training:/code",
        "code_owner/training:/model",
        "data_owner/training_data:/training_data",
    ]


def test_response_never_carries_keys_in_clear(env: AcsEnv) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    fresh = nonce(env.trusted.channel, TRAINING)
    platform = env.model_platform(TRAINING_MRENCLAVE)
    request = stakeholder_pb2.ReleaseKeysRequest(
        policy=TRAINING,
        nonce=fresh,
        workload_public_key=public_der(key),
        quote=platform.quote(binding(public_der(key), fresh)),
    )
    response = policies(env.trusted.channel).ReleaseKeys(request, timeout=10)
    assert [k.key for k in response.keys] == [b"", b"", b""]
    assert len(response.sealed.ciphertext) > 3 * 32


def test_update_signed_by_a_stranger_is_refused(env: AcsEnv) -> None:
    stub = policies(env.trusted.channel)
    hijack = DATA.policy(
        "training_data",
        version=2,
        volumes=[{"path": "/training_data", "export": ["mallory/exfil"]}],
        stakeholder=STRANGER.public_pem,
    )
    with pytest.raises(grpc.RpcError) as event:
        stub.UpdatePolicy(STRANGER.signed(hijack), timeout=10)
    assert event.value.code() == grpc.StatusCode.PERMISSION_DENIED
    current = stub.GetPolicy(stakeholder_pb2.GetPolicyRequest(name="data_owner/training_data"))
    assert current.version == 1


def test_revoked_export_stops_the_release(env: AcsEnv) -> None:
    """References are checked again at release: the exporter's grant is current."""
    stub = policies(env.trusted.channel)
    name = "data_owner/revocable"
    stub.SubmitPolicy(
        DATA.signed(
            DATA.policy("revocable", volumes=[{"path": "/d", "export": "code_owner/reader"}])
        ),
        timeout=10,
    )
    reader = CODE.policy(
        "reader",
        integrity={"mrenclave": [TRAINING_MRENCLAVE.hex()]},
        volumes=[{"path": "/d", "import": name}],
    )
    stub.SubmitPolicy(CODE.signed(reader), timeout=10)
    platform = env.model_platform(TRAINING_MRENCLAVE)
    assert set(release_keys(env.trusted.channel, "code_owner/reader", platform)) == {"/d"}
    stub.UpdatePolicy(
        DATA.signed(DATA.policy("revocable", version=2, volumes=[{"path": "/d"}])), timeout=10
    )
    with pytest.raises(grpc.RpcError) as event:
        release_keys(env.trusted.channel, "code_owner/reader", platform)
    assert event.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    history = stub.PolicyHistory(stakeholder_pb2.PolicyHistoryRequest(name=name), timeout=10)
    assert [v.version for v in history.versions] == [1, 2]


def test_stakeholder_lists_who_received_its_keys(env: AcsEnv) -> None:
    listed = DATA.list_releases(env.trusted.channel, "data_owner/training_data")
    subjects = [e.subject for e in listed.releases]
    assert subjects[:2] == ["data_owner/training_data", TRAINING]
    assert "model_owner/serving" not in subjects
    with pytest.raises(grpc.RpcError) as event:
        STRANGER.list_releases(env.trusted.channel, "data_owner/training_data")
    assert event.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_audit_chain_still_verifies(env: AcsEnv) -> None:
    result = audit_pb2_grpc.AuditStub(env.admin).VerifyChain(audit_pb2.VerifyChainRequest())
    assert result.events > 0
