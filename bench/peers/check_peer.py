#!/usr/bin/env python3
"""End-to-end check + rough sequential latency for a KServe v2 gRPC server.

Runs in the client venv (tritonclient[grpc]; setup.sh creates it):
  /root/.cache/s3ml-bench/venv-client/bin/python bench/peers/check_peer.py \
      --models-dir bazel-bin/services/model_server/zoo --grpc-port 9101

For every model: ModelMetadata, then ModelInfer with one random image; checks
the output "probabilities" has shape [1, 1000] and the JSON's datatype. Then
times --n sequential requests to --latency-model (after --warmup) and prints
p50/p90/p99/mean in milliseconds. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--latency-model", default="efficientnet_lite0_f32")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    a = p.parse_args()

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{a.grpc_port}")
    assert client.is_server_ready(), "server not ready"
    rng = np.random.default_rng(0)
    ok = True
    requests = {}
    for entry in sorted(os.listdir(a.models_dir)):
        if not entry.endswith(".json") or not os.path.exists(
            os.path.join(a.models_dir, entry[:-5] + ".tflite")
        ):
            continue
        name = entry[:-5]
        with open(os.path.join(a.models_dir, entry)) as f:
            meta = json.load(f)
        spec_in, spec_out = meta["inputs"][0], meta["outputs"][0]
        shape = [1, *spec_in["shape"][1:]]
        if spec_in["datatype"] == "FP32":
            x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        else:
            x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        inp = grpcclient.InferInput(spec_in["name"], shape, spec_in["datatype"])
        inp.set_data_from_numpy(x)
        outs = [grpcclient.InferRequestedOutput(spec_out["name"])]
        requests[name] = (inp, outs)
        md = client.get_model_metadata(name)
        res = client.infer(name, [inp], outputs=outs)
        y = res.as_numpy(spec_out["name"])
        r_out = res.get_output(spec_out["name"])
        good = (
            y is not None
            and list(y.shape) == [1, 1000]
            and r_out.datatype == spec_out["datatype"]
            and client.is_model_ready(name)
        )
        ok &= good
        print(
            f"{'OK  ' if good else 'FAIL'} {name}: in {spec_in['name']} {spec_in['datatype']} {shape} -> "
            f"{r_out.name} {r_out.datatype} {list(y.shape) if y is not None else None} "
            f"(metadata inputs={[(t.name, t.datatype, list(t.shape)) for t in md.inputs]})",
            flush=True,
        )

    if a.latency_model in requests and a.n > 0:
        inp, outs = requests[a.latency_model]
        for _ in range(a.warmup):
            client.infer(a.latency_model, [inp], outputs=outs)
        ms = []
        for _ in range(a.n):
            t = time.perf_counter()
            client.infer(a.latency_model, [inp], outputs=outs)
            ms.append((time.perf_counter() - t) * 1e3)
        q = statistics.quantiles(ms, n=100)
        print(
            f"latency {a.latency_model} n={a.n} sequential: p50={statistics.median(ms):.2f} ms "
            f"p90={q[89]:.2f} p99={q[98]:.2f} mean={statistics.fmean(ms):.2f} min={min(ms):.2f}",
            flush=True,
        )
    client.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
