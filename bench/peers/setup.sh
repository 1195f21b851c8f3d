#!/usr/bin/env bash
# Create the peer-server virtual environments (idempotent).
#
#   /root/.cache/s3ml-bench/venv-mlserver  <- requirements-mlserver.txt (mlserver==1.7.1, ai-edge-litert==2.3.0, ...)
#   /root/.cache/s3ml-bench/venv-kserve    <- requirements-kserve.txt   (kserve==0.21.0,   ai-edge-litert==2.3.0, ...)
#   /root/.cache/s3ml-bench/venv-client    <- requirements-client.txt   (tritonclient[grpc]==2.73.0, for check_peer.py)
#
# Each requirements file is a full pip-freeze lock of a verified install. A venv
# is (re)built only when its marker file (<venv>/.s3ml-requirements) differs
# from the lock, or the venv's python is missing/broken. Usage:
#   bench/peers/setup.sh [mlserver|kserve|client ...]     (default: all three)
# Env: PYTHON (default /root/.pyenv/versions/3.11.7/bin/python3, else python3.11),
#      S3ML_BENCH_CACHE (default /root/.cache/s3ml-bench)
set -euo pipefail
# A venv must see only its own packages: under `bazel run` PYTHONPATH lists ours, and pip
# would take them as already installed.
unset PYTHONPATH PYTHONHOME

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${S3ML_BENCH_CACHE:-/root/.cache/s3ml-bench}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x /root/.pyenv/versions/3.11.7/bin/python3 ]]; then PYTHON=/root/.pyenv/versions/3.11.7/bin/python3
  else PYTHON="$(command -v python3.11 || true)"; fi
fi
[[ -n "$PYTHON" ]] || { echo "setup.sh: need Python 3.11 (set PYTHON=...)" >&2; exit 1; }
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "setup.sh: $PYTHON is not Python 3.11" >&2; exit 1; }

mkdir -p "$CACHE"

ensure_venv() {
  local name="$1"
  local venv="$CACHE/venv-$name" req="$HERE/requirements-$name.txt"
  local marker="$venv/.s3ml-requirements"
  if [[ -f "$marker" ]] && cmp -s "$marker" "$req" && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "setup.sh: venv-$name up to date ($venv)"
    return 0
  fi
  echo "setup.sh: building venv-$name in $venv"
  rm -f "$marker"
  # The lock is a full freeze, so pip installs exactly it (--no-deps: no resolver); a
  # venv that pip check rejects is rebuilt from scratch once before giving up.
  local attempt
  for attempt in 1 2; do
    if ! "$venv/bin/python" -c 'import sys' 2>/dev/null || [[ $attempt == 2 ]]; then
      rm -rf "$venv"
      "$PYTHON" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -r "$req"
    if "$venv/bin/python" -m pip check; then break; fi
    [[ $attempt == 1 ]] || { echo "setup.sh: venv-$name does not match $req" >&2; return 1; }
    echo "setup.sh: venv-$name failed pip check; rebuilding it from scratch" >&2
  done
  cp "$req" "$marker"
  echo "setup.sh: venv-$name ready"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(mlserver kserve client)
for t in "${targets[@]}"; do
  case "$t" in
    mlserver|kserve|client) ensure_venv "$t" ;;
    *) echo "setup.sh: unknown target $t (mlserver|kserve|client)" >&2; exit 2 ;;
  esac
done
