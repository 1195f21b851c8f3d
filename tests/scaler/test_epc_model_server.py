"""A real sim model server (ACS-provisioned, mTLS) accounting its working set in the pool."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from services.client.inference import AttestedModel
from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import MIB, EpcPool, pool_path
from tests.model_server.harness import SERVICE, serving

MODEL = "mobilenet_v1_int8"


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (224, 224), (120, 80, 40)).save(out, format="JPEG")
    return out.getvalue()


def test_replica_registers_and_pages_its_working_set_back_per_inference(tmp_path: Path) -> None:
    path = pool_path(tmp_path, "node-1")
    view = EpcPool(path, "node-1", 64 * MIB, 32 * MIB, cost=PagingCost(0.0))
    with serving(tmp_path, (MODEL,), "--epc-pool", str(path)) as s:
        (replica,) = view.snapshot().enclaves
        assert (replica.name, replica.kind) == ("node-1/replica-0", "model_server")
        model_bytes = sum(p.stat().st_size for p in s.models_dir.rglob("*.sealed"))
        assert replica.working_set_bytes >= model_bytes
        assert replica.resident_pages * 4096 == replica.working_set_bytes  # loaded at start
        # An interfering enclave takes the whole EPC: the replica's pages are evicted...
        hog = view.register("hog", "stressor", 32 * MIB)
        view.touch(hog)
        assert view.snapshot().enclaves[0].resident_pages == 0
        before = view.snapshot().paged_in or 0
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "client.key").write_bytes(s.client.key_pem)
        (creds / "client.pem").write_bytes(s.client.cert_pem)
        client = AttestedModel(s.acs.trusted, s.target, SERVICE, creds)
        client.classify(_jpeg(), MODEL, [str(i) for i in range(1001)])
        client.close()
        # ...and the next inference pages the whole working set back in.
        after = view.snapshot()
        assert (after.paged_in or 0) - before == replica.working_set_bytes // 4096
        assert after.enclaves[0].resident_pages * 4096 == replica.working_set_bytes
    assert [e.name for e in view.snapshot().enclaves] == ["hog"]  # stop released the replica
    view.close()
