"""A real HAProxy (Debian package) in TCP mode in front of dummy TCP replicas."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.loopback.ports import kernel_port


@dataclass
class DummyReplica:
    """Accepts TCP connections and answers with its name, counting them."""

    name: str
    sock: socket.socket = field(default_factory=socket.socket)
    hits: int = 0

    def start(self) -> DummyReplica:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.name.encode())
                    self.hits += 1
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def binary(name: str) -> str:
    """Absolute path of a Debian-packaged tool the test needs."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install {name})")
    return path


def config(sock: Path, frontend: int, model: str, replicas: list[DummyReplica]) -> str:
    lines = [
        "global",
        f"    stats socket {sock} mode 600 level admin",
        "defaults",
        "    mode tcp",
        "    timeout connect 1s",
        "    timeout client 5s",
        "    timeout server 5s",
        f"frontend {model}",
        f"    bind 127.0.0.1:{frontend}",
        f"    default_backend {model}_replicas",
        f"backend {model}_replicas",
        "    balance roundrobin",
    ]
    lines += [f"    server {r.name} {r.address} check inter 200ms weight 1" for r in replicas]
    return "\n".join(lines) + "\n"


@contextmanager
def haproxy(tmp: Path, model: str, replicas: list[DummyReplica]) -> Iterator[tuple[Path, int]]:
    sock, frontend = tmp / "haproxy.sock", kernel_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(config(sock, frontend, model, replicas))
    proc = subprocess.Popen([binary("haproxy"), "-f", str(cfg), "-db"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"haproxy did not start: {proc.stderr.read() if proc.stderr else ''!r}"
                )
            time.sleep(0.05)
        yield sock, frontend
    finally:
        proc.terminate()
        proc.wait(5)


def ask(frontend: int) -> str:
    with socket.create_connection(("127.0.0.1", frontend), timeout=3) as s:
        return s.recv(64).decode()
