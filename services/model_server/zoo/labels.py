"""Writes the 1000 ImageNet-1k class names, in the standard index order.

The names come from the synset lists timm ships as package data.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def imagenet_labels() -> list[str]:
    # find_spec locates the package without importing it (importing timm needs torch).
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the timm distribution (ImageNet class data) is not installed")
    info = Path(spec.submodule_search_locations[0]) / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
    )
    return [lemmas[s].split(",")[0].strip() for s in synsets]


if __name__ == "__main__":
    labels = imagenet_labels()
    assert len(labels) == 1000, len(labels)
    Path(sys.argv[1]).write_text("\n".join(labels) + "\n")
