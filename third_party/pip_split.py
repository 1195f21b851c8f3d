"""Split one `pip install --target` tree into one Bazel package per distribution.

Run by the `pip_lock_repository` rule: each `*.dist-info/RECORD` says which files a
distribution owns; they move to `<name>/site/` and `<name>/BUILD.bazel` declares a
`py_library` whose deps are the distribution's `Requires-Dist` entries that apply
to this interpreter and are present in the lock.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
from email.parser import Parser
from pathlib import Path

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def owned_files(site: Path, dist_info: Path) -> list[Path]:
    files = []
    with (dist_info / "RECORD").open(newline="") as record:
        for row in csv.reader(record):
            if not row:
                continue
            # Console scripts are recorded relative to a prefix pip never made
            # under --target ("../../bin/x"); pip put them in <site>/bin.
            rel = row[0]
            if rel.startswith("../../bin/"):
                rel = "bin/" + rel.removeprefix("../../bin/")
            path = (site / rel).resolve()
            if site.resolve() in path.parents and path.exists():
                files.append(path)
    return files


def requirements(dist_info: Path) -> list[str]:
    metadata = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    names = []
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(normalize(req.name))
    return names


BUILD = """\
package(default_visibility = ["//visibility:public"])

# {project} {version}, installed from the hash-locked requirements_lock.txt.
py_library(
    name = "{name}",
    data = glob(["site/**"], exclude = ["**/* *"]),
    imports = ["site"],
    deps = {deps},
)
"""


def main(site_arg: str, out_arg: str) -> None:
    site, out = Path(site_arg), Path(out_arg)
    dists = sorted(site.glob("*.dist-info"))
    names = {}
    for dist_info in dists:
        meta = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
        names[dist_info] = (meta["Name"], meta["Version"])
    present = {normalize(project) for project, _ in names.values()}
    plans = {d: (owned_files(site, d), requirements(d)) for d in dists}
    for dist_info, (files, reqs) in plans.items():
        project, version = names[dist_info]
        name = normalize(project)
        target = out / name / "site"
        for path in files:
            dest = target / path.relative_to(site.resolve())
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        deps = sorted({f"//{r}" for r in reqs if r in present and r != name})
        (out / name / "BUILD.bazel").write_text(
            BUILD.format(project=project, version=version, name=name, deps=deps)
        )
    shutil.rmtree(site)  # only unowned leftovers (empty dirs, caches) remain


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
