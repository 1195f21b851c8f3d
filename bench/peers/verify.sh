#!/usr/bin/env bash
# End-to-end check of both peer servers: start, check all four models over
# KServe v2 gRPC (check_peer.py: output "probabilities" shape [1,1000]), time
# efficientnet_lite0_f32 (200 sequential requests), SIGTERM, make sure nothing
# is left running. Usage: bench/peers/verify.sh [models_dir]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${S3ML_BENCH_CACHE:-/root/.cache/s3ml-bench}"
MODELS="${1:-$HERE/../../bazel-bin/services/model_server/zoo}"
LOGDIR="$(mktemp -d /tmp/s3ml-peers-verify-XXXXXX)"
"$HERE/setup.sh" >/dev/null

run_one() {  # name launcher grpc_port http_port
  local name="$1" launcher="$2" gport="$3" hport="$4" pid rc=0
  "$CACHE/venv-$name/bin/python" "$HERE/$launcher" --models-dir "$MODELS" \
      --grpc-port "$gport" --http-port "$hport" >"$LOGDIR/$name.out" 2>"$LOGDIR/$name.err" &
  pid=$!
  for _ in $(seq 240); do
    grep -qx READY "$LOGDIR/$name.out" && break
    kill -0 "$pid" 2>/dev/null || { echo "$name died; see $LOGDIR/$name.err" >&2; return 1; }
    sleep 0.5
  done
  grep -qx READY "$LOGDIR/$name.out" || { echo "$name not READY" >&2; kill -TERM "$pid"; wait "$pid" || true; return 1; }
  echo "== $name"
  "$CACHE/venv-client/bin/python" "$HERE/check_peer.py" --models-dir "$MODELS" --grpc-port "$gport" || rc=1
  kill -TERM "$pid"
  wait "$pid" || echo "$name launcher exit status $?"
  if pgrep -f -- "--grpc-port $gport" >/dev/null || pgrep -f "$name start /tmp/s3ml-" >/dev/null; then
    echo "$name: processes left behind!" >&2; rc=1
  fi
  return $rc
}

status=0
run_one mlserver run_mlserver.py "${MLSERVER_GRPC_PORT:-9101}" "${MLSERVER_HTTP_PORT:-9102}" || status=1
run_one kserve run_kserve.py "${KSERVE_GRPC_PORT:-9201}" "${KSERVE_HTTP_PORT:-9202}" || status=1
echo "logs: $LOGDIR"
exit $status
