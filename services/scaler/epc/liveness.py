"""Is an enclave's process still alive? pid plus start time, so a reused pid is not."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its ')'.
    return stat.rsplit(b")", 1)[1].split()


def start_time(pid: int) -> int:
    """Start time of `pid` in clock ticks since boot (field 22; 0 when /proc cannot tell)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def alive(pid: int, started: int) -> bool:
    """False for a gone, zombie or reused pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] in (b"Z", b"X"):
        return False
    return started == 0 or int(fields[19]) == started
