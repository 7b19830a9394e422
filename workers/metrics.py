"""Prometheus metrics of the worker and the intake: one exporter per process, the Temporal SDK's.

Why the SDK's meter and not prometheus_client: the worker's runtime already serves Temporal's own
metrics (task latencies, poller and slot usage, activity failures), the workflow meter is the one
that skips replay (workflows/metrics.py), and the activity meter adds the SDK's labels; quell's
metrics then share that one endpoint and add no dependency. The intake runs a runtime of its own
for its client's metrics and its counters.

| metric | from | labels |
|---|---|---|
| quell_alerts_received_total | intake, per alert taken | tenant, outcome (case, duplicate) |
| quell_alerts_refused_total | intake, per refused delivery | reason |
| quell_cases_started_total, quell_cases_closed_total | case workflow | tenant; verdict, status |
| quell_time_to_verdict (histogram, seconds) | case workflow | verdict |
| quell_actions_total | case workflow, at close | kind, status |
| quell_evidence_unavailable_total | case workflow | source |
| quell_approvals_pending, quell_approval_oldest_wait_seconds | worker, every `metrics.pending_every` | kind |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import get_args

import structlog
from temporalio.client import Client, RPCError, WorkflowQueryFailedError
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities import cases
from config.settings import MetricsSettings
from workflows.types import ActionKind, OpenedCase

log = structlog.get_logger("quell.metrics")

VERDICT_BUCKETS_S = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]
REFUSALS = {
    400: "malformed", 401: "unauthenticated", 403: "forbidden", 413: "too_large", 422: "invalid",
    503: "unavailable",
}


def prometheus_runtime(metrics: MetricsSettings) -> Runtime | None:
    """A Temporal runtime serving `/metrics` on the configured address; None when metrics are off."""
    if not metrics.enabled:
        return None
    prometheus = PrometheusConfig(
        bind_address=metrics.address,
        counters_total_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides={"quell_time_to_verdict": VERDICT_BUCKETS_S},
    )
    runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    log.info("metrics served", url=f"http://{metrics.address}/metrics")
    return runtime


def meter_of(runtime: Runtime | None) -> MetricMeter:
    return runtime.metric_meter if runtime is not None else MetricMeter.noop


class IntakeMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self._received = meter.create_counter("quell_alerts_received", "Alerts the intake took, by tenant and outcome")
        self._refused = meter.create_counter("quell_alerts_refused", "Alert deliveries the intake refused, by reason")

    def received(self, opened: OpenedCase) -> None:
        self._received.add(1, {"tenant": opened.tenant_id, "outcome": "duplicate" if opened.duplicate else "case"})

    def refused(self, status: int) -> None:
        self._refused.add(1, {"reason": REFUSALS.get(status, f"http_{status}")})


class PendingApprovalGauges:
    """Actions waiting for approval across the namespace, by kind, and the oldest wait, from
    Temporal's visibility and each waiting case's `pending` query. Every worker reports the same
    namespace-wide numbers: aggregate them with max, not sum. A request's age is its deadline minus
    `approval.expire_after`."""

    def __init__(self, client: Client, meter: MetricMeter, expire_after: timedelta) -> None:
        self._client = client
        self._expire_after = expire_after
        self._pending = meter.create_gauge("quell_approvals_pending", "Actions waiting for approval, by kind")
        self._oldest = meter.create_gauge_float(
            "quell_approval_oldest_wait_seconds", "How long the oldest waiting approval request has waited", "s"
        )

    async def refresh(self) -> None:
        waiting = await cases.all_pending(self._client)
        by_kind = Counter(p.kind for p in waiting)
        for kind in get_args(ActionKind):
            self._pending.set(by_kind[kind], {"kind": kind})
        now = datetime.now(timezone.utc)
        waits = [(now - (p.expires_at - self._expire_after)).total_seconds() for p in waiting if p.expires_at]
        self._oldest.set(max([0.0, *waits]))

    async def keep_refreshing(self, stop: asyncio.Event, every: timedelta) -> None:
        """Refresh until `stop` is set; a failed pass is logged and the next one tries again."""
        while not stop.is_set():
            try:
                await self.refresh()
            except (RPCError, WorkflowQueryFailedError) as failure:
                log.warning("pending approvals not counted", error=type(failure).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every.total_seconds())
