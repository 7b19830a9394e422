"""The Temporal worker: one process runs the case, poller and quota pacer workflows and every activity
for all tenants."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerTuner

from activities.alerts import AlertActivities
from activities.approval_gate import ApprovalLoader, TrustActivities
from activities.clients import ClientPool
from activities.evidence import EvidenceActivities
from activities.notify import NotifyActivities
from activities.pacing import RetryAtTurn
from activities.remediation import RemediationActivities
from activities.tenant_cache import TenantCache
from config.settings import Settings, WorkerSettings, current_approval
from workers.metrics import PendingApprovalGauges, prometheus_runtime
from workers.temporal_connection import connect
from workflows.case import ConnectorCaseWorkflow
from workflows.pacer import QuotaPacerWorkflow
from workflows.poller import AlertPollerWorkflow

log = structlog.get_logger("quell.worker")


def build_activities(
    settings: Settings, pool: ClientPool, client: Client, approval: ApprovalLoader
) -> list[Callable[..., Any]]:
    cache = TenantCache(settings.tenant_cache.ttl)
    return [
        *EvidenceActivities(pool, cache).all(),
        *TrustActivities(approval).all(),
        *RemediationActivities(pool, approval, cache).all(),
        *NotifyActivities(settings.notify).all(),
        *AlertActivities(settings, pool, client).all(),  # the poller opens cases, so it needs the client
    ]


def slots(worker: WorkerSettings) -> dict[str, Any]:
    """The Worker's slot options: the resource-based tuner, or fixed counts."""
    if worker.resource_tuner is not None:
        tuner = worker.resource_tuner
        return {"tuner": WorkerTuner.create_resource_based(
            target_memory_usage=tuner.target_memory_usage, target_cpu_usage=tuner.target_cpu_usage)}
    return {
        "max_concurrent_workflow_tasks": worker.max_concurrent_workflow_tasks,
        "max_concurrent_activities": worker.max_concurrent_activities,
    }


def new_worker(
    client: Client,
    settings: Settings,
    pool: ClientPool,
    task_queue: str | None = None,
    approval: ApprovalLoader | None = None,
) -> Worker:
    """`approval` reads the approval settings on every use (default: `settings.approval` as it
    is at that moment)."""
    if settings.approval.allow_unsigned:
        structlog.get_logger("quell.worker").warning(
            "approval.allow_unsigned is on: anyone who can reach Temporal can approve in an approver's "
            "name; use it for the demo and emulator scenarios only")
    tuning = settings.worker
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        # The pacer runs wherever paced activities do: their calls wait on its updates.
        workflows=[ConnectorCaseWorkflow, AlertPollerWorkflow, QuotaPacerWorkflow],
        activities=build_activities(settings, pool, client, approval or (lambda: settings.approval)),
        interceptors=[RetryAtTurn()],
        max_cached_workflows=tuning.max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.activity_task_pollers),
        graceful_shutdown_timeout=tuning.graceful_shutdown,
        **slots(tuning),
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    if not settings.codec.enabled:
        log.warning("payload encryption is off: no [codec] keys configured, case data reaches Temporal in the clear")
    runtime = prometheus_runtime(settings.metrics)
    client = await connect(settings, runtime=runtime)
    pool = ClientPool(settings.tenants, settings.quotas)
    try:
        # The approval settings are re-read from the config on every use: edits count without a restart.
        async with new_worker(client, settings, pool, approval=current_approval):
            if runtime is None:
                await stop.wait()
            else:
                gauges = PendingApprovalGauges(client, runtime.metric_meter, settings.approval.expire_after)
                await gauges.keep_refreshing(stop, settings.metrics.pending_every)
    finally:
        await pool.aclose()
