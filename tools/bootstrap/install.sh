#!/usr/bin/env bash
# Installs what s3ml needs on a fresh Debian 12 machine, only when missing.
# Idempotent: a second run installs nothing and takes about a second.
set -euo pipefail

DEBIAN_PACKAGES=(
  bazel-bootstrap bazel-bootstrap-source   # Bazel 4.2.3, offline
  swtpm swtpm-tools tpm2-tools libtss2-dev  # software TPM 2.0 and tpm2-tss
  pkg-config gcc libc6-dev python3-dev      # to build tpm2-pytss against libtss2
  g++ libnghttp2-dev libprotobuf-dev libssl-dev  # the model server's native data plane (HTTP/2, TLS)
  libgrpc++-dev                                 # the serving benchmark's C++ load generator
  protobuf-compiler protobuf-compiler-grpc     # their C++ protobuf and gRPC code generators
  prometheus haproxy etcd-server            # monitoring, L4 load balancing, store
  python3 python3-pip python3-venv          # interpreter for the build when none is set up
  git make ca-certificates
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: run 'make test' as root once, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${S3ML_PYTHON:-$(command -v python3)}"
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "bootstrap: $python has no pip; set S3ML_PYTHON to an interpreter with pip" >&2
  exit 1
fi
