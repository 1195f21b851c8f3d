"""Policy documents: strict parsing, canonical encoding, signatures, reference rules."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.attest.errors import FailedPreconditionError, InvalidArgumentError
from services.attest.stakeholder import references, signature
from services.attest.stakeholder.document import PolicyDocument, canonical, parse
from tests.attest.acs_harness import srcdir
from tests.attest.stakeholder_harness import GPU_CODE_HASH, Stakeholder

OWNER = Stakeholder("data_owner")
ECDSA_OWNER = Stakeholder.ecdsa("code_owner")


def test_canonical_encoding_ignores_yaml_formatting() -> None:
    plain = OWNER.policy("x", volumes=[{"path": "/d", "export": ["b/c", "a/b"]}])
    tree = yaml.safe_load(plain)
    reordered = yaml.safe_dump(dict(reversed(list(tree.items()))), default_flow_style=True)
    commented = b"# a comment\n" + reordered.encode()
    assert canonical(parse(plain)) == canonical(parse(commented))
    tree = json.loads(canonical(parse(plain)))
    assert tree["volumes"] == [{"path": "/d", "import": "", "from": "", "export": ["a/b", "b/c"]}]
    assert tree["stakeholder"] == parse(plain).stakeholder_der.hex()
    assert tree["operating_system"] is None


@pytest.mark.parametrize("owner", [OWNER, ECDSA_OWNER], ids=["ed25519", "ecdsa-p256"])
def test_signature_round_trip_and_tampering(owner: Stakeholder) -> None:
    document = parse(owner.policy("x"))
    sig = signature.sign(owner.key, canonical(document))
    assert signature.verifies(document.stakeholder_der, sig, canonical(document))
    other = parse(owner.policy("x", command="sh -c evil"))
    assert not signature.verifies(document.stakeholder_der, sig, canonical(other))
    assert not signature.verifies(document.stakeholder_der, b"", canonical(document))
    assert not signature.verifies(document.stakeholder_der, b"\x30\x00", canonical(document))


def test_rsa_stakeholder_keys_are_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidArgumentError, match="Ed25519 or ECDSA P-256"):
        signature.load_public(der)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"name": "NoSlash"}, "stakeholder/asset"),
        ({"version": 0}, "positive integer"),
        ({"version": True}, "positive integer"),
        ({"stakeholder": "not a key"}, "PEM public key"),
        ({"volumes": [{"path": "relative"}]}, "absolute path"),
        ({"volumes": [{"path": "/a/../b"}]}, "absolute path"),
        ({"volumes": [{"path": "/a"}, {"path": "/a"}]}, "unique"),
        ({"volumes": [{"path": "/a", "import": "x/y", "export": ["z/w"]}]}, "both import"),
        ({"volumes": [{"path": "/a", "from": "/b"}]}, "only with import"),
        ({"volumes": [{"path": "/a", "import": "data_owner/x"}]}, "itself"),
        ({"integrity": {}}, "mrenclave is required"),
        ({"integrity": {"mrenclave": ["ab"]}}, "32 bytes"),
        (
            {"security_level": "high_integrity", "integrity": {"code_hash": GPU_CODE_HASH.hex()}},
            "operating_system",
        ),
        ({"security_level": "high_integrity", "integrity": {}}, "code_hash is required"),
        ({"operating_system": {"pcrs": {}}}, "operating_system.pcrs"),
    ],
)
def test_invalid_documents_name_the_problem(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgumentError, match=needle.replace(".", r"\.")):
        parse(OWNER.policy("x", **fields))


def test_missing_required_field() -> None:
    tree = yaml.safe_load(OWNER.policy("x"))
    del tree["stakeholder"]
    with pytest.raises(InvalidArgumentError, match=r"policy\.stakeholder is required"):
        parse(yaml.safe_dump(tree).encode())


def test_oversized_document() -> None:
    with pytest.raises(InvalidArgumentError, match="over"):
        parse(OWNER.policy("x", command="x" * 70_000))


def _lookup(*documents: PolicyDocument) -> references.Lookup:
    table = {d.name: d for d in documents}
    return table.get


def test_long_cycle_is_named() -> None:
    a = parse(
        Stakeholder("a").policy(
            "p",
            volumes=[
                {"path": "/o", "export": "c/p"},
                {"path": "/i", "import": "b/p", "from": "/o"},
            ],
        )
    )
    b = parse(
        Stakeholder("b").policy(
            "p",
            volumes=[
                {"path": "/o", "export": "a/p"},
                {"path": "/i", "import": "c/p", "from": "/o"},
            ],
        )
    )
    c = parse(
        Stakeholder("c").policy(
            "p",
            volumes=[
                {"path": "/o", "export": "b/p"},
                {"path": "/i", "import": "a/p", "from": "/o"},
            ],
        )
    )
    references.check_acyclic(a, _lookup(b))  # c not there yet: no cycle
    with pytest.raises(FailedPreconditionError, match="a/p -> b/p -> c/p -> a/p"):
        references.check_acyclic(a, _lookup(b, c))


def _doc_examples() -> dict[str, PolicyDocument]:
    text = (srcdir() / "docs" / "policies.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    documents = [parse(block.encode()) for block in blocks]
    return {d.name: d for d in documents}


def test_documented_examples_parse_and_reference_as_described() -> None:
    examples = _doc_examples()
    assert set(examples) == {
        "data_owner/training_data",
        "code_owner/training",
        "code_owner/gpu_training",
    }
    references.check_grants(examples["code_owner/training"], examples.get)
    references.check_acyclic(examples["code_owner/training"], examples.get)
    with pytest.raises(FailedPreconditionError, match="does not export /training_data"):
        references.check_grants(examples["code_owner/gpu_training"], examples.get)
