"""Parsers for the EPC statistics a real SGX node offers, and sources built on them.

Formats (fixtures in tests/scaler/testdata/, docs/epc.md):
- Out-of-tree driver (isgx) patched with EPC counters, as S3ML used: `/proc/sgx_stats`
  holds one counter per line, `name value` (also `name: value` / `name= value`), with
  the counter names of the isgx metrics patch (`sgx_nr_total_epc_pages`,
  `sgx_nr_free_pages`, `sgx_nr_evicted` = EWB count, `sgx_loaded_back` = ELDU count,
  `sgx_nr_enclaves`, ...). The same patch also exposes each counter as a module
  parameter, `/sys/module/isgx/parameters/<name>`, one integer per file; the source
  reads that directory when `/proc/sgx_stats` is absent.
- `/proc/sgx_enclaves`: a whitespace table, one enclave per line, optional header
  naming the columns; without a header the columns are `pid eid size epc_pages`.
- In-kernel driver (Linux >= 5.11): `/sys/devices/system/node/node*/x86/sgx_total_bytes`
  (EPC bytes per NUMA node) and the misc cgroup's `misc.capacity` / `misc.current` /
  `misc.max` lines `sgx_epc <bytes>` (`max` for no limit). It has no paging counter and
  no enclave list: enclaves are found as processes mapping `/dev/sgx_enclave` in
  `/proc/<pid>/maps` (one per process; the mapped range is an upper bound of its EPC).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.scaler.epc.errors import EpcFormatError, EpcUnavailableError
from services.scaler.epc.snapshot import PAGE_SIZE, Enclave, EpcSnapshot

_COUNTER_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]?\s+(-?\d+)\s*$")
_PAGE_COLUMNS = ("epc_pages", "epc_pages_cnt", "pages")


@dataclass(frozen=True)
class OotStats:
    """The isgx driver's node-wide counters."""

    total_pages: int
    free_pages: int
    evicted: int
    loaded_back: int
    enclaves: int


@dataclass(frozen=True)
class OotEnclave:
    pid: int
    eid: str
    size_bytes: int
    epc_pages: int


@dataclass(frozen=True)
class MiscCgroup:
    """EPC lines of the misc cgroup controller (bytes); None where the file is absent."""

    capacity: int | None
    current: int | None
    max: int | None  # None: no limit ("max")


def _counters(text: str, source: str) -> dict[str, int]:
    counters: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _COUNTER_LINE.match(line)
        if match is None:
            raise EpcFormatError(f"{source} line {number}: expected 'name value', got {line!r}")
        counters[match.group(1)] = int(match.group(2))
    return counters


def _need(counters: dict[str, int], name: str, source: str) -> int:
    if name not in counters:
        raise EpcFormatError(f"{source}: counter {name} missing (is the metrics patch loaded?)")
    value = counters[name]
    if value < 0:
        raise EpcFormatError(f"{source}: counter {name} is negative ({value})")
    return value


def parse_sgx_stats(text: str, source: str = "/proc/sgx_stats") -> OotStats:
    counters = _counters(text, source)
    stats = OotStats(
        total_pages=_need(counters, "sgx_nr_total_epc_pages", source),
        free_pages=_need(counters, "sgx_nr_free_pages", source),
        evicted=_need(counters, "sgx_nr_evicted", source),
        loaded_back=_need(counters, "sgx_loaded_back", source),
        enclaves=_need(counters, "sgx_nr_enclaves", source),
    )
    if stats.free_pages > stats.total_pages:
        raise EpcFormatError(f"{source}: more free pages than EPC pages")
    return stats


def read_module_parameters(directory: Path) -> str:
    """The isgx metrics patch's module parameters as `/proc/sgx_stats`-style text."""
    lines = [f"{p.name} {p.read_text().strip()}" for p in sorted(directory.glob("sgx_*"))]
    return "\n".join(lines) + "\n"


def parse_sgx_enclaves(text: str, source: str = "/proc/sgx_enclaves") -> tuple[OotEnclave, ...]:
    rows = [line.split() for line in text.splitlines() if line.strip()]
    columns = ["pid", "eid", "size", "epc_pages"]
    if rows and not rows[0][0].isdigit():
        columns = [c.lower().rstrip(":") for c in rows[0]]
        rows = rows[1:]
    pages_col = next((c for c in _PAGE_COLUMNS if c in columns), None)
    if "pid" not in columns or pages_col is None:
        raise EpcFormatError(f"{source}: header needs a pid and an epc_pages column: {columns}")
    enclaves = []
    for number, row in enumerate(rows, 2):
        if len(row) != len(columns):
            raise EpcFormatError(f"{source} row {number}: {len(row)} fields, want {len(columns)}")
        cell = dict(zip(columns, row, strict=True))
        try:
            enclaves.append(
                OotEnclave(
                    pid=int(cell["pid"]),
                    eid=cell.get("eid", ""),
                    size_bytes=int(cell.get("size", "0"), 0),
                    epc_pages=int(cell[pages_col]),
                )
            )
        except ValueError as err:
            raise EpcFormatError(f"{source} row {number}: not a number ({err})") from err
    return tuple(enclaves)


def parse_misc_line(text: str, source: str) -> int | None:
    """The `sgx_epc` value of a misc cgroup file; None for `max`; error when absent."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "sgx_epc":
            if parts[1] == "max":
                return None
            if not parts[1].isdigit():
                raise EpcFormatError(f"{source}: sgx_epc value {parts[1]!r} is not a number")
            return int(parts[1])
    raise EpcFormatError(f"{source}: no sgx_epc line (is the SGX EPC misc controller on?)")


def parse_total_bytes(texts: list[str]) -> int:
    """Sum of the per-NUMA-node `sgx_total_bytes` files."""
    total = 0
    for text in texts:
        if not text.strip().isdigit():
            raise EpcFormatError(f"sgx_total_bytes: {text.strip()!r} is not a number")
        total += int(text)
    return total


Classifier = Callable[[int], str]
_ENCLAVE_DEVICES = ("/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx")


def parse_enclave_mappings(maps: str, source: str) -> int:
    """Bytes of a process's address space mapped from the SGX enclave device."""
    total = 0
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] in _ENCLAVE_DEVICES:
            start, _, end = fields[0].partition("-")
            try:
                total += int(end, 16) - int(start, 16)
            except ValueError as err:
                raise EpcFormatError(f"{source}: bad address range {fields[0]!r}") from err
    return total


def classify_by_cmdline(pid: int, proc: Path = Path("/proc")) -> str:
    """Enclave kind from its process's command line (hardware: no registration)."""
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return "other"
    for marker, kind in ((b"model_server", "model_server"), (b"model-server", "model_server"),
                         (b"stressor", "stressor"), (b"acs", "acs")):  # fmt: skip
        if marker in cmdline:
            return kind
    return "other"


class OotSource:
    """EPC of a node running the patched out-of-tree isgx driver."""

    def __init__(
        self,
        node: str,
        proc: Path = Path("/proc"),
        params: Path = Path("/sys/module/isgx/parameters"),
        classify: Classifier = classify_by_cmdline,
    ) -> None:
        self._node, self._proc, self._params, self._classify = node, proc, params, classify

    def snapshot(self) -> EpcSnapshot:
        stats_file = self._proc / "sgx_stats"
        if stats_file.exists():
            stats = parse_sgx_stats(stats_file.read_text(), str(stats_file))
        elif self._params.is_dir():
            stats = parse_sgx_stats(read_module_parameters(self._params), str(self._params))
        else:
            raise EpcUnavailableError(f"neither {stats_file} nor {self._params}: no isgx metrics")
        enclaves_file = self._proc / "sgx_enclaves"
        rows = (
            parse_sgx_enclaves(enclaves_file.read_text(), str(enclaves_file))
            if enclaves_file.exists()
            else ()
        )
        return EpcSnapshot(
            node=self._node,
            epc_bytes=stats.total_pages * PAGE_SIZE,
            pages_in_use=stats.total_pages - stats.free_pages,
            paged_in=stats.loaded_back,
            paged_out=stats.evicted,
            enclaves=tuple(
                Enclave(
                    f"pid-{r.pid}/{r.eid}",
                    self._classify(r.pid),
                    r.pid,
                    r.epc_pages * PAGE_SIZE,
                    r.epc_pages,
                )
                for r in rows
            ),
            simulated=False,
        )


class InKernelSource:
    """EPC of a node on the upstream driver: capacity and usage, no paging counters."""

    def __init__(
        self,
        node: str,
        sys: Path = Path("/sys"),
        cgroup: Path = Path("/sys/fs/cgroup"),
        proc: Path = Path("/proc"),
    ) -> None:
        self._node, self._sys, self._cgroup, self._proc = node, sys, cgroup, proc

    def enclaves(self) -> tuple[Enclave, ...]:
        found = []
        for maps in sorted(self._proc.glob("[0-9]*/maps")):
            try:
                size = parse_enclave_mappings(maps.read_text(), str(maps))
            except OSError:
                continue  # the process exited, or is not ours to read
            if size:
                pid = int(maps.parent.name)
                kind = classify_by_cmdline(pid, self._proc)
                found.append(Enclave(f"pid-{pid}", kind, pid, size, 0))
        return tuple(found)

    def misc(self) -> MiscCgroup:
        def read(name: str) -> int | None:
            path = self._cgroup / name
            return parse_misc_line(path.read_text(), str(path)) if path.exists() else None

        return MiscCgroup(read("misc.capacity"), read("misc.current"), read("misc.max"))

    def snapshot(self) -> EpcSnapshot:
        files = sorted(self._sys.glob("devices/system/node/node*/x86/sgx_total_bytes"))
        misc = self.misc()
        if not files and misc.capacity is None:
            raise EpcUnavailableError("no sgx_total_bytes in sysfs and no sgx_epc misc cgroup")
        total = parse_total_bytes([f.read_text() for f in files]) if files else misc.capacity
        return EpcSnapshot(
            node=self._node,
            epc_bytes=total or 0,
            pages_in_use=(misc.current or 0) // PAGE_SIZE,
            paged_in=None,
            paged_out=None,
            enclaves=self.enclaves(),
            simulated=False,
        )
