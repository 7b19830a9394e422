"""Optional OpenTelemetry tracing (`[tracing] enabled = true`): Temporal's TracingInterceptor on
every client quell connects, so the worker, intake and CLI trace workflows, activities, signals,
queries and updates, linked across processes through Temporal headers.

Spans go to the process's OpenTelemetry tracer provider: run the process under
`opentelemetry-instrument` or otherwise configure the SDK and its exporter (OTEL_* variables);
quell picks no exporter. Without OpenTelemetry installed, enabling tracing is an error that says
what to install.
"""

from __future__ import annotations

from temporalio.client import Interceptor

from config.settings import TracingSettings


class TracingUnavailable(RuntimeError):
    """Tracing is enabled but OpenTelemetry is not installed."""


def tracing_interceptors(tracing: TracingSettings) -> list[Interceptor]:
    if not tracing.enabled:
        return []
    try:
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError:
        raise TracingUnavailable(
            "tracing.enabled = true needs OpenTelemetry: pip install 'quell[tracing]'"
        ) from None
    return [TracingInterceptor()]
