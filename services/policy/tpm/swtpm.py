"""A software TPM 2.0 (swtpm) with an EK certificate from a test manufacturer CA.

Used for tests and for the emulated nodes of the local cluster; production
hosts use their hardware TPM (TCTI `device:/dev/tpmrm0`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services.loopback import ports


class SwtpmError(Exception):
    """swtpm could not be set up or started; the message says which step."""


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair() -> int:
    """A port p with p + 1 free too: tpm2-tss's swtpm TCTI expects control on p + 1."""
    for _ in range(200):
        port = ports.kernel_port()
        if port < 65535 and _bindable(port + 1):
            return port
    raise SwtpmError("no pair of free ports for swtpm")


@dataclass
class Swtpm:
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def manufacturer_ca(self) -> list[Path]:
        """The EK certificate's issuer and its root, as swtpm_localca created them."""
        ca = self.directory / "ca"
        return [ca / "issuercert.pem", ca / "swtpm-localca-rootca-cert.pem"]

    def manufacture(self) -> None:
        """Creates TPM state with sha1+sha256 banks and EK/platform certificates (once)."""
        state, ca = self.directory / "state", self.directory / "ca"
        if (state / "tpm2-00.permall").exists():
            return
        for tool in ("swtpm", "swtpm_setup", "swtpm_localca"):
            if shutil.which(tool) is None:
                raise SwtpmError(f"{tool} is not installed; run tools/bootstrap/install.sh as root")
        state.mkdir(parents=True, exist_ok=True)
        ca.mkdir(parents=True, exist_ok=True)
        (self.directory / "localca.conf").write_text(
            f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
            f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n"
        )
        (self.directory / "localca.options").write_text(
            "--platform-manufacturer s3ml-test\n--platform-version 1\n--platform-model swtpm\n"
        )
        (self.directory / "setup.conf").write_text(
            "create_certs_tool = /usr/bin/swtpm_localca\n"
            f"create_certs_tool_config = {self.directory}/localca.conf\n"
            f"create_certs_tool_options = {self.directory}/localca.options\n"
        )
        config = str(self.directory / "setup.conf")
        cmd = [
            "/usr/bin/swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert",
            "--create-platform-cert", "--lock-nvram", "--config", config,
            "--pcr-banks", "sha1,sha256", "--overwrite",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SwtpmError(f"swtpm_setup failed: {result.stderr.strip()[-300:]}")

    def start(self) -> None:
        self.manufacture()
        for _ in range(3):  # another process may bind the pair between the check and swtpm
            self.port = _free_port_pair()
            self.process = self._spawn(self.port)
            if ports.listening(self.process, self.port, time.monotonic() + 10):
                self._reset_lockout()
                return
            if self.process.poll() is None:
                self.stop()
                raise SwtpmError("swtpm did not open its port within 10 s")
        raise SwtpmError("swtpm exited at start three times (ports taken meanwhile?)")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "/usr/bin/swtpm",
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={self.directory / 'state'}",
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _reset_lockout(self) -> None:
        """A swtpm stopped by a signal never got TPM2_Shutdown, and a TPM counts each such
        unorderly restart as a failed authorization (dictionary-attack protection): after
        a few restarts it refuses the AK (seen as ActivateCredential failing on a later
        `make up`). An emulated node's owner resets that with the (empty) lockout auth at
        every start, as a host's operator would with its own."""
        cmd = ["tpm2_dictionarylockout", "--clear-lockout", "--tcti", self.tcti]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SwtpmError(f"resetting the DA lockout failed: {result.stderr.strip()[-300:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
