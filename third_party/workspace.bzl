"""The single place where s3ml declares its external repositories."""

load("//third_party:pip.bzl", "pip_lock_repository")

def s3ml_workspace():
    """Declares every external repository; call once from WORKSPACE."""

    # Debian's Bazel 4.2.3 cannot download its rule sets offline; these are the
    # stand-ins shipped by bazel-bootstrap-source, vendored so nothing depends on
    # a path outside the checkout.
    for name in ["rules_cc", "rules_java", "rules_proto", "platforms"]:
        native.local_repository(
            name = name,
            path = "third_party/bazel/" + name,
        )

    # `bazel test` references this repository even without --coverage.
    native.local_repository(
        name = "remote_coverage_tools",
        path = "third_party/bazel/remote_coverage_tools",
    )

    pip_lock_repository(
        name = "pypi",
        lock = "//:requirements_lock.txt",
        splitter = "//third_party:pip_split.py",
    )
