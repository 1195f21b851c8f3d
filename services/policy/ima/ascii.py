"""The ASCII measurement list (ascii_runtime_measurements), parsed by Keylime.

Keylime's IMA AST (`keylime.ima.ast`) already knows how every template's
fields are encoded into template data; we reuse it and turn its entries into
ours, so replay and appraisal are one code path for both formats.
"""

from __future__ import annotations

from keylime.ima import ast

from services.policy.ima.log import Entry, ImaLogError, parse


def parse_ascii(text: str, first_index: int = 0) -> list[Entry]:
    """Entries of an ASCII log, checked like binary ones (template digests verified)."""
    binary = bytearray()
    for offset, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        index = first_index + offset
        try:
            entry = ast.Entry(line, ast.Validator({}))
        except (ast.ParserError, ValueError, TypeError, IndexError) as err:
            raise ImaLogError(index, f"malformed ASCII entry: {err}") from err
        template = line.split()[2]
        data = entry.mode.bytes()
        digest = bytes(entry.ima_template_hash)
        head = int(entry.pcr).to_bytes(4, "little") + digest + len(template).to_bytes(4, "little")
        if template == "ima":
            # Keylime renders the legacy path padded for hashing; the binary log
            # stores digest, length and the bare path.
            raise ImaLogError(index, "legacy 'ima' template in an ASCII log: use the binary log")
        binary += head + template.encode() + len(data).to_bytes(4, "little") + data
    return parse(bytes(binary), first_index=first_index)
