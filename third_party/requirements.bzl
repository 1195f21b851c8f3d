"""`requirement("grpcio")` → the Bazel label of that locked distribution."""

def normalize(name):
    """PEP 503 name normalisation, with `_` so the result is a valid package name."""
    return name.lower().replace("-", "_").replace(".", "_")

def requirement(name):
    return "@pypi//%s" % normalize(name)
