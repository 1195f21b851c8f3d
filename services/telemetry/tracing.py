"""OpenTelemetry tracing: OTLP when an endpoint is configured, else JSON lines on disk.

Spans carry names, measurements and outcomes only — never keys, secrets,
nonces or tensor contents.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a local file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [span.to_json(indent=None) for span in spans]
        with self._lock, self._path.open("a") as out:
            out.writelines(line + "\n" for line in lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def configure(
    component: str, platform: str, otlp_endpoint: str = "", jsonl_path: Path | None = None
) -> TracerProvider:
    resource = Resource.create(
        {"service.name": component, "s3ml.platform": platform, "s3ml.simulated": platform == "sim"}
    )
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter | None = None
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    elif jsonl_path is not None:
        exporter = JsonLinesExporter(jsonl_path)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def read_spans(path: Path) -> list[dict[str, object]]:
    """Spans written by JsonLinesExporter, for tests and tools."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
