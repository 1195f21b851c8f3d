"""The real exporter binary over HTTP, scraped and parsed as Prometheus text."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import MIB, EpcPool, pool_path
from tests.scaler.procs import enclave_process, module, ready_line

DATA = Path(__file__).parent / "testdata"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextmanager
def exporter(*args: str) -> Iterator[str]:
    proc = module("services.scaler.exporter.main", "--listen", "127.0.0.1:0", *args)
    try:
        port = ready_line(proc).split("=")[1]
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http URL we built)
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_sim_exporter_reports_the_shared_pool(tmp_path: Path) -> None:
    path = pool_path(tmp_path, "node-1")
    pool = EpcPool(path, "node-1", cost=PagingCost(0.0))
    replica = pool.register("node-1/replica-0", "model_server", 60 * MIB)
    pool.touch(replica)
    stress = enclave_process(path, "node-1", "stress", "stressor", 40 * MIB)
    try:
        pool.touch(replica)  # pages back what the stressor took
        with exporter("--node", "node-1", "--source", "sim", "--state-dir", str(tmp_path)) as url:
            samples = scrape(url)
    finally:
        stress.communicate("\n")
        pool.close()
    node = (("node", "node-1"),)
    usable = int(93.5 * MIB)
    assert samples[("s3ml_epc_size_bytes", node)] == usable
    assert samples[("s3ml_epc_pages_in_use", node)] == usable // 4096
    overflow = (100 * MIB - usable) // 4096
    assert samples[("s3ml_epc_pages_paged_out_total", node)] == 2 * overflow
    assert samples[("s3ml_epc_pages_paged_in_total", node)] == (100 * MIB) // 4096 + overflow
    assert samples[("s3ml_epc_enclaves", node)] == 2
    assert samples[("s3ml_epc_foreign_enclaves", node)] == 1
    assert samples[("s3ml_epc_simulated", node)] == 1
    working = "s3ml_epc_enclave_working_set_bytes"
    assert samples[(working, (("enclave", "stress"), ("kind", "stressor"), *node))] == 40 * MIB
    key = (working, (("enclave", "node-1/replica-0"), ("kind", "model_server"), *node))
    assert samples[key] == 60 * MIB


def test_hardware_exporter_reads_the_oot_driver_files() -> None:
    args = ["--node", "sgx-1", "--source", "sgx-oot", "--proc", str(DATA / "oot/proc")]
    with exporter(*args, "--sys", str(DATA / "none")) as url:
        samples = scrape(url)
    node = (("node", "sgx-1"),)
    assert samples[("s3ml_epc_pages_paged_in_total", node)] == 41000
    assert samples[("s3ml_epc_pages_paged_out_total", node)] == 56000
    assert samples[("s3ml_epc_enclaves", node)] == 3
    assert samples[("s3ml_epc_simulated", node)] == 0


def test_inkernel_exporter_has_no_paging_series() -> None:
    args = ["--node", "sgx-2", "--source", "sgx-inkernel"]
    args += ["--sys", str(DATA / "inkernel/sys"), "--cgroup", str(DATA / "inkernel/cgroup")]
    args += ["--proc", str(DATA / "inkernel/proc")]
    with exporter(*args) as url:
        samples = scrape(url)
    names = {name for name, _ in samples}
    assert ("s3ml_epc_size_bytes", (("node", "sgx-2"),)) in samples
    assert "s3ml_epc_pages_paged_in_total" not in names  # absent, not a misleading 0
    assert samples[("s3ml_epc_foreign_enclaves", (("node", "sgx-2"),))] == 1


def test_broken_source_exports_nothing_and_the_server_survives(tmp_path: Path) -> None:
    proc_dir = tmp_path / "proc"
    proc_dir.mkdir()
    (proc_dir / "sgx_stats").write_text("garbage\n")
    with exporter("--node", "x", "--source", "sgx-oot", "--proc", str(proc_dir),
                  "--sys", str(tmp_path)) as url:  # fmt: skip
        assert scrape(url) == {}
        (proc_dir / "sgx_stats").write_text((DATA / "oot/proc/sgx_stats").read_text())
        assert scrape(url)[("s3ml_epc_enclaves", (("node", "x"),))] == 0
