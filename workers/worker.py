"""The Temporal worker: one process runs the case and poller workflows and every activity for all tenants."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerTuner

from activities.alerts import AlertActivities
from activities.clients import ClientPool
from activities.evidence import EvidenceActivities
from activities.notify import NotifyActivities
from activities.remediation import RemediationActivities
from config.settings import Settings, WorkerSettings
from workers.temporal_connection import connect
from workflows.case import ConnectorCaseWorkflow
from workflows.poller import AlertPollerWorkflow

log = structlog.get_logger("quell.worker")


def build_activities(settings: Settings, pool: ClientPool, client: Client) -> list[Callable[..., Any]]:
    return [
        *EvidenceActivities(pool).all(),
        *RemediationActivities(pool).all(),
        *NotifyActivities(settings.notify_webhook).all(),
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


def new_worker(client: Client, settings: Settings, pool: ClientPool, task_queue: str | None = None) -> Worker:
    tuning = settings.worker
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=[ConnectorCaseWorkflow, AlertPollerWorkflow],
        activities=build_activities(settings, pool, client),
        max_cached_workflows=tuning.max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.activity_task_pollers),
        graceful_shutdown_timeout=tuning.graceful_shutdown,
        **slots(tuning),
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    if not settings.codec.enabled:
        log.warning("payload encryption is off: no [codec] keys configured, case data reaches Temporal in the clear")
    client = await connect(settings)
    pool = ClientPool(settings.tenants)
    try:
        async with new_worker(client, settings, pool):
            await stop.wait()
    finally:
        await pool.aclose()
