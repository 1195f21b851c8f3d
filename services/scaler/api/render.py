"""Plain-text rendering of a ScalerStatus, for `s3mlctl status` and logs."""

from __future__ import annotations

from s3ml.scaler.v1 import scaler_pb2


def status_text(st: scaler_pb2.ScalerStatus) -> str:
    lines = [f"scaler  backend={st.backend}  {'BLIND: holding last weights' if st.blind else 'ok'}"]
    if st.component.platform_warning:
        lines.append(f"  {st.component.platform_warning}")
    lines.append("nodes:")
    lines += [
        f"  {n.node:<12} paging {n.paging_mb_per_s:8.1f} MB/s  EPC used "
        f"{n.pages_in_use * 4096 / 2**20:6.1f}/{n.epc_bytes / 2**20:.1f} MiB  "
        f"enclaves {n.enclaves} (foreign {n.foreign_enclaves})"
        f"{'' if n.metrics_fresh else '  STALE'}"
        for n in st.nodes
    ]
    lines.append("endpoints:")
    lines += [
        f"  {e.id:<44} node {e.node:<10} weight {e.weight}{' (pinned)' if e.pinned else ''}"
        f"  counter {e.counter}{'' if e.healthy else '  UNHEALTHY'}"
        for e in st.endpoints
    ]
    lines.append("slos:")
    lines += [
        f"  {s.model:<24} p99 {s.p99_ms:g} ms  TH {s.paging_threshold_mb_per_s:g} MB/s  "
        f"N {s.intervals_over_threshold}  replicas {s.min_replicas}..{s.max_replicas}"
        for s in st.slos
    ]
    lines.append("decisions:")
    lines += [
        f"  {d.time.ToDatetime().strftime('%H:%M:%S')} {d.action:<9} {d.target}: {d.reason}"
        for d in st.decisions
    ]
    return "\n".join(lines) + "\n"
