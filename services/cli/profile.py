"""The s3mlctl profile: which ACS to talk to and what it must be (written by `trust`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from services.attest.client import AcsPin
from services.attest.sim.pki import write_private


def home() -> Path:
    return Path(os.environ.get("S3ML_HOME", Path.home() / ".config" / "s3ml"))


@dataclass(frozen=True)
class Profile:
    acs: str
    admin: str
    mrenclave_hex: str
    quote_root_pem: str
    allowed_tcb_statuses: tuple[str, ...]
    admin_dir: str = ""

    @property
    def pin(self) -> AcsPin:
        return AcsPin(
            bytes.fromhex(self.mrenclave_hex),
            self.quote_root_pem.encode(),
            frozenset(self.allowed_tcb_statuses),
        )

    def save(self, directory: Path) -> Path:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / "profile.json"
        write_private(path, json.dumps(asdict(self), indent=2).encode())
        return path

    @classmethod
    def load(cls, directory: Path) -> Profile:
        path = directory / "profile.json"
        if not path.exists():
            raise FileNotFoundError(
                f"no s3ml profile at {path}; run `s3mlctl trust --acs HOST:PORT ...` first"
            )
        raw = json.loads(path.read_text())
        raw["allowed_tcb_statuses"] = tuple(raw["allowed_tcb_statuses"])
        return cls(**raw)
