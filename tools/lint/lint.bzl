"""Ruff and `mypy --strict` as Bazel tests over the repository's own Python."""

load("//third_party:requirements.bzl", "requirement")

# Type stubs of distributions our code imports everywhere.
_STUBS = ["types-grpcio", "types-protobuf", "types-PyYAML"]

def lint_tests(name, srcs, deps = [], mypy = True):
    """Declares `<name>_ruff` and `<name>_mypy` tests over `srcs`.

    Args:
      name: prefix of the two test targets.
      srcs: the Python files to check (our code, never generated code).
      deps: libraries the checked code imports (generated stubs, distributions).
      mypy: False for code that runs in another environment (its imports are not in @pypi).
    """
    common = dict(
        srcs = ["//tools/lint:run_lint.py"],
        main = "//tools/lint:run_lint.py",
        data = srcs + ["//:pyproject.toml"],
        python_version = "PY3",
    )
    native.py_test(
        name = name + "_ruff",
        args = ["ruff"] + ["$(rootpaths %s)" % s for s in srcs],
        deps = [requirement("ruff")],
        size = "small",
        **common
    )
    if not mypy:
        return
    native.py_test(
        name = name + "_mypy",
        args = ["mypy"] + ["$(rootpaths %s)" % s for s in srcs],
        deps = deps + [requirement(r) for r in _STUBS] + [requirement("mypy")],
        size = "medium",
        **common
    )
