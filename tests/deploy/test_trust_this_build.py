"""A later `make up` moves each service's policy to the rebuilt model server's MRENCLAVE.

Against a real ACS on loopback: afterwards only the new measurement is trusted, the
rest of the policy, the key and the shared TLS identity stay, and a run on the same
build changes nothing (no new revision).
"""

from __future__ import annotations

from pathlib import Path

from deploy.local import up
from s3ml.attest.v1 import registry_pb2, types_pb2
from tests.attest.acs_harness import running_acs

OLD, NEW = bytes(range(32)), bytes(range(32, 64))


def test_a_rebuilt_server_replaces_the_old_measurement(tmp_path: Path) -> None:
    with running_acs(tmp_path) as acs:
        acs.registry.RegisterService(
            registry_pb2.RegisterServiceRequest(
                name="svc",
                dns_names=["svc.s3ml.local"],
                policy=types_pb2.AppraisalPolicy(
                    mrenclave=[OLD], allowed_tcb_statuses=["UpToDate", "SWHardeningNeeded"]
                ),
                provided_secrets=[types_pb2.Secret(name="model-key", value=b"k" * 32)],
            ),
            timeout=10,
        )
        get = registry_pb2.GetServiceRequest(name="svc")
        before = acs.registry.GetService(get, timeout=10)

        up.trust_this_build(acs.registry, before, NEW)
        after = acs.registry.GetService(get, timeout=10)

        assert list(after.policy.mrenclave) == [NEW]
        assert list(after.policy.allowed_tcb_statuses) == list(before.policy.allowed_tcb_statuses)
        assert sorted(after.policy.allowed_tcb_statuses) == ["SWHardeningNeeded", "UpToDate"]
        assert list(after.secret_names) == ["model-key"]
        assert after.certificate_pem == before.certificate_pem
        assert after.revision > before.revision

        up.trust_this_build(acs.registry, after, NEW)  # the same build again
        assert acs.registry.GetService(get, timeout=10).revision == after.revision
