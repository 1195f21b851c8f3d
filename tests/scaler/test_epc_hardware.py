"""Parsers of the real SGX drivers' EPC statistics, over fixtures of each format."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scaler.epc import hardware
from services.scaler.epc.errors import EpcFormatError, EpcUnavailableError

DATA = Path(__file__).parent / "testdata"


def test_oot_proc_files_give_usage_paging_and_enclaves() -> None:
    kinds = {4242: "model_server", 4243: "stressor"}
    source = hardware.OotSource(
        "node-1", DATA / "oot/proc", DATA / "none", lambda pid: kinds.get(pid, "other")
    )
    snap = source.snapshot()
    assert snap.epc_bytes == 23936 * 4096
    assert snap.pages_in_use == 23936 - 1200
    assert (snap.paged_in, snap.paged_out) == (41000, 56000)
    assert [(e.pid, e.kind, e.working_set_bytes) for e in snap.enclaves] == [
        (4242, "model_server", 9000 * 4096),
        (4243, "stressor", 12000 * 4096),
        (4300, "other", 1736 * 4096),
    ]
    assert snap.foreign_enclaves == 2
    assert not snap.simulated


def test_oot_module_parameters_when_proc_file_absent() -> None:
    params = DATA / "oot_params/sys/module/isgx/parameters"
    snap = hardware.OotSource("node-2", DATA / "none", params).snapshot()
    assert (snap.epc_bytes, snap.pages_in_use, snap.paged_in, snap.paged_out) == (
        23936 * 4096, 0, 0, 0,
    )  # fmt: skip
    assert snap.enclaves == ()


def test_inkernel_sums_numa_nodes_and_reads_misc_cgroup() -> None:
    source = hardware.InKernelSource(
        "node-3", DATA / "inkernel/sys", DATA / "inkernel/cgroup", DATA / "inkernel/proc"
    )
    snap = source.snapshot()
    assert [(e.pid, e.kind, e.working_set_bytes) for e in snap.enclaves] == [
        (5001, "model_server", 0x10000000 + 0x1000),
        (5002, "stressor", 0x8000000),
    ]
    assert snap.epc_bytes == 67108864 + 31457280
    assert snap.pages_in_use == 40960000 // 4096
    assert snap.paged_in is None
    assert snap.paged_out is None
    assert source.misc() == hardware.MiscCgroup(98566144, 40960000, None)


def test_missing_driver_is_unavailable_not_zero() -> None:
    with pytest.raises(EpcUnavailableError, match="no isgx metrics"):
        hardware.OotSource("n", DATA / "none", DATA / "none").snapshot()
    with pytest.raises(EpcUnavailableError, match="sgx_epc misc cgroup"):
        hardware.InKernelSource("n", DATA / "none", DATA / "none").snapshot()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sgx_nr_total_epc_pages 10\nthis is not a counter\n", "line 2: expected 'name value'"),
        ("sgx_nr_total_epc_pages 10\n", "counter sgx_nr_free_pages missing"),
        (
            "sgx_nr_total_epc_pages 10\nsgx_nr_free_pages 11\nsgx_nr_evicted 0\n"
            "sgx_loaded_back 0\nsgx_nr_enclaves 0\n",
            "more free pages than EPC pages",
        ),
        (
            "sgx_nr_total_epc_pages 10\nsgx_nr_free_pages 1\nsgx_nr_evicted -4\n"
            "sgx_loaded_back 0\nsgx_nr_enclaves 0\n",
            "sgx_nr_evicted is negative",
        ),
    ],
    ids=["garbage-line", "missing-counter", "free-over-total", "negative"],
)
def test_malformed_sgx_stats(text: str, message: str) -> None:
    with pytest.raises(EpcFormatError, match=message):
        hardware.parse_sgx_stats(text)


def test_sgx_stats_accepts_colon_and_equals_separators() -> None:
    text = (
        "sgx_nr_total_epc_pages: 100\nsgx_nr_free_pages= 40\nsgx_nr_evicted 1\n"
        "sgx_loaded_back 2\nsgx_nr_enclaves 1\n"
    )
    assert hardware.parse_sgx_stats(text) == hardware.OotStats(100, 40, 1, 2, 1)


def test_sgx_enclaves_without_header_uses_default_columns() -> None:
    rows = hardware.parse_sgx_enclaves("77 0x1000 0x2000 5\n")
    assert rows == (hardware.OotEnclave(77, "0x1000", 0x2000, 5),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pid eid size\n1 2 3\n", "needs a pid and an epc_pages column"),
        ("pid eid size epc_pages\n1 2 3\n", "row 2: 3 fields, want 4"),
        ("pid eid size epc_pages\n1 2 3 many\n", "row 2: not a number"),
    ],
    ids=["no-pages-column", "short-row", "not-a-number"],
)
def test_malformed_sgx_enclaves(text: str, message: str) -> None:
    with pytest.raises(EpcFormatError, match=message):
        hardware.parse_sgx_enclaves(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("sgx_epc 4096\n", 4096), ("res_a 1\nsgx_epc max\n", None)],
    ids=["bytes", "max"],
)
def test_misc_line(text: str, expected: int | None) -> None:
    assert hardware.parse_misc_line(text, "misc.max") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("res_a 1\n", "no sgx_epc line"), ("sgx_epc lots\n", "is not a number")],
    ids=["absent", "garbage"],
)
def test_malformed_misc_line(text: str, message: str) -> None:
    with pytest.raises(EpcFormatError, match=message):
        hardware.parse_misc_line(text, "misc.current")


def test_malformed_enclave_mapping() -> None:
    maps = "zz-7f00 rw-s 00000000 00:06 5 /dev/sgx_enclave\n"
    with pytest.raises(EpcFormatError, match="bad address range"):
        hardware.parse_enclave_mappings(maps, "maps")


def test_malformed_total_bytes() -> None:
    with pytest.raises(EpcFormatError, match="not a number"):
        hardware.parse_total_bytes(["12\n", "twelve\n"])
