"""CPU time of a process tree, read from /proc, so a benchmark can say where the cores went.

The clients, the servers and the raw interpreter share this machine's two cores, so
requests/s alone cannot tell a slow server from a busy client. Every server here
forks (workers, supervised children), hence the whole tree.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, user + system seconds) of one live process."""
    try:
        fields = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone between listing and reading
    return int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S


def tree_cpu_s(root: int) -> float:
    """User + system seconds used so far by `root` and its live descendants."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p))}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(children.get(pid, []))
    return total
