"""`py_pytest`: a Bazel test target that runs pytest over its sources."""

load("//third_party:requirements.bzl", "requirement")

def py_pytest(name, srcs, deps = [], data = [], size = "small", tags = [], args = [], **kwargs):
    """One test target per test file set; pytest reports each case.

    Args:
      name: target name.
      srcs: test files (test_*.py) plus helpers they import.
      deps: libraries under test.
      data: runtime files.
      size: Bazel test size.
      tags: Bazel tags.
      args: extra pytest arguments.
      **kwargs: passed to py_test.
    """
    native.py_test(
        name = name,
        srcs = srcs + ["//tools/testing:pytest_main.py"],
        main = "//tools/testing:pytest_main.py",
        args = args + ["$(rootpaths %s)" % s for s in srcs if s.startswith("test_") or "/test_" in s],
        deps = deps + [requirement("pytest")],
        data = data,
        size = size,
        tags = tags,
        python_version = "PY3",
        **kwargs
    )
