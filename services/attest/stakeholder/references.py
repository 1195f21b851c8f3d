"""Import/export references between policies: grants and cycles.

An import is only as good as the exporter's current grant, so the same check
runs when a policy is submitted and again at every key release.
"""

from __future__ import annotations

from collections.abc import Callable

from services.attest.errors import FailedPreconditionError
from services.attest.stakeholder.document import PolicyDocument, Volume

Lookup = Callable[[str], PolicyDocument | None]


def exported_volume(importer: str, volume: Volume, lookup: Lookup) -> Volume:
    """The exporter's volume that `volume` imports; FailedPreconditionError unless granted."""
    exporter = lookup(volume.imports)
    if exporter is None:
        raise FailedPreconditionError(
            f"volume {volume.path} imports {volume.imports}, which is not a policy"
        )
    for candidate in exporter.volumes:
        if candidate.own and candidate.path == volume.source_path:
            if importer in candidate.exports:
                return candidate
            break
    raise FailedPreconditionError(
        f"volume {volume.path}: {volume.imports} does not export {volume.source_path} "
        f"to {importer}; its owner must add '{importer}' to that volume's export list"
    )


def check_grants(document: PolicyDocument, lookup: Lookup) -> None:
    for volume in document.imports():
        exported_volume(document.name, volume, lookup)


def check_acyclic(document: PolicyDocument, lookup: Lookup) -> None:
    """Refuses a document whose imports lead back to itself (with it in place)."""

    def edges(name: str) -> list[str]:
        current = document if name == document.name else lookup(name)
        return [] if current is None else [v.imports for v in current.imports()]

    stack: list[tuple[str, list[str]]] = [(document.name, [document.name])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for target in edges(name):
            if target == document.name:
                cycle = " -> ".join([*path, target])
                raise FailedPreconditionError(f"reference cycle: {cycle}")
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
