"""tree_cpu_s counts a process's live descendants, and only them, on the real /proc."""

from __future__ import annotations

import subprocess
import sys

from bench.proctime import tree_cpu_s

SPIN_S = 0.4
# The grandchild spins, says so on the shared stdout, and stays alive; its parent idles.
_GRANDCHILD = (
    "import time\n"
    f"end = time.process_time() + {SPIN_S}\n"
    "while time.process_time() < end: pass\n"
    "print('spun', flush=True)\n"
    "time.sleep(60)\n"
)
_CHILD = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {_GRANDCHILD!r}])\n"


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_counts_live_descendants_and_not_others() -> None:
    child, idle = _python(_CHILD), _python("import time; time.sleep(60)")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "spun"
        assert tree_cpu_s(child.pid) >= SPIN_S * 0.9  # the grandchild's spin is counted
        assert tree_cpu_s(idle.pid) < SPIN_S / 2  # an unrelated process's tree is not
    finally:
        for proc in (child, idle):
            proc.kill()  # the grandchild, orphaned, sleeps out its minute
            proc.wait()


def test_gone_process_counts_nothing() -> None:
    done = _python("pass")
    done.wait()
    assert tree_cpu_s(done.pid) == 0.0
