"""s3mlctl keygen, policy sign|submit|update|show|history|audit: a stakeholder's commands.

Signing happens here, on the stakeholder's machine, over the same canonical
encoding the ACS verifies; the private key never leaves this machine. Policy
calls go to the pinned ACS's public port: the signature is the authentication.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from s3ml.attest.v1 import stakeholder_pb2, stakeholder_pb2_grpc
from services.attest import client
from services.attest.ca import utcnow
from services.attest.errors import AcsError
from services.attest.sim.pki import write_private
from services.attest.stakeholder import signature
from services.attest.stakeholder.document import PolicyDocument, canonical, parse
from services.attest.stakeholder.workload import nonce
from services.cli.profile import Profile


class PolicyCommandError(ValueError):
    """A failure to report in one line (a ValueError: s3mlctl's main prints those)."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise PolicyCommandError(f"cannot read {path}: {err.strerror}") from err


def _document(path: Path) -> tuple[bytes, PolicyDocument]:
    raw = _read(path)
    try:
        return raw, parse(raw)
    except AcsError as err:
        raise PolicyCommandError(f"{path}: {err}") from err


def _private_key(path: Path) -> signature.PrivateKey:
    try:
        return signature.load_private(_read(path))
    except (ValueError, TypeError) as err:
        raise PolicyCommandError(f"{path}: not an unencrypted Ed25519/P-256 key ({err})") from err


def cmd_keygen(args: argparse.Namespace) -> int:
    key: signature.PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if args.ecdsa
        else ed25519.Ed25519PrivateKey.generate()
    )
    out: Path = args.out
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = out / f"{args.name}.key", out / f"{args.name}.pub"
    if private.exists():
        raise PolicyCommandError(f"{private} exists; refusing to overwrite a stakeholder key")
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public.write_bytes(pem)
    kind = "ECDSA P-256" if args.ecdsa else "Ed25519"
    print(f"{kind} stakeholder key in {private} (0600); public key in {public}")
    print("put the public key in your policy's `stakeholder:` field")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    _, document = _document(args.policy)
    key = _private_key(args.key)
    if signature.public_der(key) != document.stakeholder_der:
        print(
            "note: this key is not the document's `stakeholder` key; the signature is only "
            "valid as an update signed by the current owner (key rotation)"
        )
    out: Path = args.out or args.policy.with_name(args.policy.name + ".sig")
    out.write_bytes(signature.sign(key, canonical(document)))
    print(f"signed {document.name} version {document.version}: {out}")
    return 0


def _stub(args: argparse.Namespace) -> tuple[client.TrustedAcs, Any]:
    profile = Profile.load(args.home)
    trusted = client.connect(profile.acs, profile.pin, utcnow)
    return trusted, stakeholder_pb2_grpc.StakeholderPoliciesStub(trusted.channel)


def _print_version(version: stakeholder_pb2.PolicyVersion) -> None:
    when = datetime.fromtimestamp(version.accepted_at.seconds, UTC).isoformat(timespec="seconds")
    print(
        f"{version.name} version {version.version} accepted {when} "
        f"digest {version.digest.hex()[:16]}"
    )


def _submit(args: argparse.Namespace, update: bool) -> int:
    raw, _ = _document(args.policy)  # local check first: a clear error before any call
    sig_path: Path = args.sig or args.policy.with_name(args.policy.name + ".sig")
    request = stakeholder_pb2.SubmitPolicyRequest(document=raw, signature=_read(sig_path))
    trusted, stub = _stub(args)
    try:
        call = stub.UpdatePolicy if update else stub.SubmitPolicy
        _print_version(call(request, timeout=30))
    finally:
        trusted.close()
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    return _submit(args, update=False)


def cmd_update(args: argparse.Namespace) -> int:
    return _submit(args, update=True)


def cmd_show(args: argparse.Namespace) -> int:
    trusted, stub = _stub(args)
    try:
        request = stakeholder_pb2.GetPolicyRequest(name=args.name, version=args.version)
        version = stub.GetPolicy(request, timeout=30)
    finally:
        trusted.close()
    _print_version(version)
    print(version.document.decode(errors="replace").rstrip())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    trusted, stub = _stub(args)
    try:
        request = stakeholder_pb2.PolicyHistoryRequest(name=args.name)
        history = stub.PolicyHistory(request, timeout=30)
    finally:
        trusted.close()
    for version in history.versions:
        _print_version(version)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Who received this policy's volume keys (signed by the policy's key)."""
    key = _private_key(args.key)
    trusted, stub = _stub(args)
    try:
        fresh = nonce(trusted.channel, args.name)
        sig = signature.sign(key, signature.list_releases_message(args.name, fresh))
        request = stakeholder_pb2.ListKeyReleasesRequest(
            policy=args.name, signature=sig, nonce=fresh
        )
        releases = stub.ListKeyReleases(request, timeout=30).releases
    finally:
        trusted.close()
    for event in releases:
        when = datetime.fromtimestamp(event.time.seconds, UTC).isoformat(timespec="seconds")
        keys = ",".join(event.secret_names)
        print(
            f"{event.sequence:>6} {when} {event.subject:<28} {event.mrenclave_hex[:16]:<16} "
            f"{keys} {event.detail}".rstrip()
        )
    print(f"{len(releases)} release(s) of {args.name}'s keys")
    return 0


def register(sub: Any) -> None:
    """Adds `keygen` and `policy ...` to s3mlctl's subcommands."""
    keygen = sub.add_parser("keygen", help="create a stakeholder signing key")
    keygen.add_argument("--out", type=Path, required=True, help="directory for NAME.key/.pub")
    keygen.add_argument("--name", default="stakeholder")
    keygen.add_argument("--ecdsa", action="store_true", help="ECDSA P-256 instead of Ed25519")
    keygen.set_defaults(func=cmd_keygen)

    policy = sub.add_parser("policy", help="stakeholder policies in the ACS").add_subparsers(
        dest="policy", required=True
    )
    sign = policy.add_parser("sign", help="sign a policy file (writes POLICY.sig)")
    sign.add_argument("policy", type=Path)
    sign.add_argument("--key", type=Path, required=True)
    sign.add_argument("--out", type=Path)
    sign.set_defaults(func=cmd_sign)
    for name, func, text in (
        ("submit", cmd_submit, "submit the first version of a signed policy"),
        ("update", cmd_update, "submit the next version, signed by the current key"),
    ):
        command = policy.add_parser(name, help=text)
        command.add_argument("policy", type=Path)
        command.add_argument("--sig", type=Path, help="signature file (default POLICY.sig)")
        command.set_defaults(func=func)
    show = policy.add_parser("show", help="print one version (default: the latest)")
    show.add_argument("--name", required=True)
    show.add_argument("--version", type=int, default=0)
    show.set_defaults(func=cmd_show)
    history = policy.add_parser("history", help="every version of a policy")
    history.add_argument("--name", required=True)
    history.set_defaults(func=cmd_history)
    audit = policy.add_parser("audit", help="who received this policy's volume keys")
    audit.add_argument("--name", required=True)
    audit.add_argument("--key", type=Path, required=True, help="the policy's current key")
    audit.set_defaults(func=cmd_audit)
