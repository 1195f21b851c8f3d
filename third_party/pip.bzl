"""Installs the hash-locked Python distributions into an external repository.

There is no offline rules_python for Bazel 4, so this rule does the part of it
s3ml needs: `pip install --no-deps --require-hashes` of requirements_lock.txt,
then one `py_library` per distribution (`@pypi//grpcio`) with its dependencies
taken from the distribution's own metadata, and a Python toolchain pinned to the
interpreter pip installed for, so wheels and interpreter always match.
"""

def _interpreter(rctx):
    explicit = rctx.os.environ.get("S3ML_PYTHON", "")
    if explicit:
        return rctx.path(explicit)
    found = rctx.which("python3")
    if not found:
        fail("python3 not found on PATH; set S3ML_PYTHON to a Python 3.11 interpreter")
    return found

def _pip_lock_repository_impl(rctx):
    python = _interpreter(rctx)
    lock = rctx.path(rctx.attr.lock)
    rctx.report_progress("pip install --require-hashes " + str(lock))
    result = rctx.execute(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            # No wheels exist for tpm2-pytss; it builds against the system's tpm2-tss.
            "--no-binary=tpm2-pytss",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
            "site",
            "-r",
            lock,
        ],
        timeout = 3600,
        quiet = True,
    )
    if result.return_code != 0:
        fail("pip install of %s failed:\n%s\n%s" % (lock, result.stdout, result.stderr))
    result = rctx.execute(
        [python, rctx.path(rctx.attr.splitter), "site", "."],
        timeout = 600,
    )
    if result.return_code != 0:
        fail("splitting the installed distributions failed:\n" + result.stderr)
    rctx.file("BUILD.bazel", """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

py_runtime(
    name = "python3_runtime",
    interpreter_path = "{python}",
    stub_shebang = "#!{python}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":python3_runtime",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)

exports_files(["interpreter.txt"])
""".format(python = str(python)))
    rctx.file("interpreter.txt", str(python) + "\n")

pip_lock_repository = repository_rule(
    implementation = _pip_lock_repository_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "splitter": attr.label(mandatory = True, allow_single_file = True),
    },
    environ = ["S3ML_PYTHON"],
)
