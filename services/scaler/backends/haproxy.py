"""Local backend: HAProxy's runtime API over its admin socket.

Weights are set with `set server B/S weight N` (0 = no new connections, which
is Algorithm 1's "out of rotation"); state is read from `show servers state`.
Replicas are started and stopped by the local cluster through a
`ReplicaLauncher` and joined to or removed from HAProxy with `add server` /
`del server`, so scaling needs no reload and drops no connection.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.scaler.controller.ports import BackendError, ReplicaLauncher, ScalingUnsupportedError
from services.scaler.controller.state import Endpoint

BACKEND_SUFFIX = "_replicas"
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_RUNNING = 2  # srv_op_state SRV_ST_RUNNING
DRAIN_TIMEOUT_S = 5.0  # a scaled-in server's killed sessions are gone within this
DRAIN_POLL_S = 0.02


@dataclass(frozen=True)
class ServerState:
    backend: str
    server: str
    address: str
    op_state: int
    admin_state: int
    weight: int


class RuntimeApi:
    """One command per connection on HAProxy's stats socket (non-interactive mode)."""

    def __init__(self, socket_path: Path, timeout_s: float = 3.0) -> None:
        self._path, self._timeout = socket_path, timeout_s

    def command(self, line: str) -> str:
        if "\n" in line or ";" in line:
            raise BackendError("refusing a runtime API command with a newline or ';'")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout)
                sock.connect(str(self._path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as err:
            raise BackendError(f"HAProxy socket {self._path}: {err}") from err
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> list[ServerState]:
        text = self.command("show servers state")
        lines = text.splitlines()
        header = next((ln for ln in lines if ln.startswith("# be_id")), None)
        if header is None:
            raise BackendError(f"unexpected `show servers state` answer: {text[:200]!r}")
        cols = header[2:].split()
        out = []
        for ln in lines:
            if not ln or ln.startswith("#") or ln.strip() == "1":
                continue
            row = dict(zip(cols, ln.split(), strict=False))
            out.append(
                ServerState(
                    backend=row["be_name"],
                    server=row["srv_name"],
                    address=f"{row['srv_addr']}:{row['srv_port']}",
                    op_state=int(row["srv_op_state"]),
                    admin_state=int(row["srv_admin_state"]),
                    weight=int(row["srv_uweight"]),
                )
            )
        return out

    def refusal(self, line: str) -> str:
        """Runs a command; "" if HAProxy accepted it (an empty answer or a known
        acknowledgement), else its answer."""
        answer = self.command(line).strip()
        accepted = not answer or answer.startswith(("New server registered", "Server deleted"))
        return "" if accepted else answer

    def checked(self, line: str) -> None:
        """Runs a command that must be accepted."""
        if answer := self.refusal(line):
            raise BackendError(f"HAProxy refused `{line}`: {answer[:200]}")


def node_of(server: str, model: str) -> str:
    """Node of a server named `<node>-<model>[...]` (deploy/local naming), else the name."""
    marker = f"-{model}"
    return server[: server.index(marker)] if marker in server else server


class HaproxyBackend:
    def __init__(self, api: RuntimeApi, launcher: ReplicaLauncher | None = None) -> None:
        self._api, self._launcher = api, launcher

    @property
    def name(self) -> str:
        return "local"

    def endpoints(self) -> Sequence[Endpoint]:
        eps = []
        for s in self._api.servers():
            if not s.backend.endswith(BACKEND_SUFFIX):
                continue
            model = s.backend[: -len(BACKEND_SUFFIX)]
            eps.append(
                Endpoint(
                    id=f"{s.backend}/{s.server}",
                    model=model,
                    node=node_of(s.server, model),
                    address=s.address,
                    weight=s.weight,
                    healthy=s.op_state == _RUNNING and s.admin_state == 0,
                )
            )
        return eps

    def set_weight(self, endpoint_id: str, weight: int) -> None:
        self._api.checked(f"set server {_id(endpoint_id)} weight {int(weight)}")

    def scale_out(self, model: str, node: str) -> str:
        if self._launcher is None:
            raise ScalingUnsupportedError("this HAProxy backend has no replica launcher")
        replica = self._launcher.start(model, node)
        ep = _id(f"{model}{BACKEND_SUFFIX}/{replica.name}")
        self._api.checked(f"add server {ep} {replica.address} weight 1 check inter 1s")
        self._api.checked(f"enable health {ep}")
        self._api.checked(f"enable server {ep}")
        return ep

    def scale_in(self, endpoint_id: str) -> None:
        if self._launcher is None:
            raise ScalingUnsupportedError("this HAProxy backend has no replica launcher")
        ep = _id(endpoint_id)
        backend, server = ep.split("/")
        model = backend.removesuffix(BACKEND_SUFFIX)
        self._api.checked(f"disable server {ep}")
        self._api.command(f"shutdown sessions server {ep}")
        self._delete(ep)
        self._launcher.stop(model, node_of(server, model), server)

    def _delete(self, ep: str) -> None:
        """`del server` once its sessions are gone. HAProxy ends them asynchronously (those
        `shutdown sessions` killed, and those whose clients just closed), so a delete right
        after can find them still attached (seen once in CI); it is retried until they go."""
        until = time.monotonic() + DRAIN_TIMEOUT_S
        while answer := self._api.refusal(f"del server {ep}"):
            if "still has connections" not in answer or time.monotonic() >= until:
                raise BackendError(f"HAProxy refused `del server {ep}`: {answer[:200]}")
            time.sleep(DRAIN_POLL_S)


def _id(endpoint_id: str) -> str:
    backend, _, server = endpoint_id.partition("/")
    if not (_NAME.match(backend) and _NAME.match(server)):
        raise BackendError(f"endpoint id {endpoint_id!r} is not BACKEND/SERVER")
    return f"{backend}/{server}"
