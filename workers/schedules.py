"""The poller's Temporal Schedules: one per tenant, installed by `quell poller install`.

Installing is an explicit operator step rather than something every worker does at start:
several worker replicas would race to create and update the same schedules, a worker's
deployment would silently re-enable a poller an operator paused, and tenants that receive
alerts by webhook only need no poller at all. Installing is idempotent: an existing schedule
is updated in place, which keeps its state, so the cursor (the last run's result) survives.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from workflows.poller import POLLER_WORKFLOW, poller_schedule_id
from workflows.types import PollerInput


def poller_input(settings: Settings, tenant_id: str) -> PollerInput:
    poller = settings.poller
    return PollerInput(
        tenant_id=tenant_id,
        initial_lookback=poller.initial_lookback,
        overlap=poller.overlap,
        max_pages=poller.max_pages,
        page_size=poller.page_size,
    )


def poller_schedule(settings: Settings, tenant_id: str, task_queue: str | None = None) -> Schedule:
    every = settings.poller.every
    return Schedule(
        action=ScheduleActionStartWorkflow(
            POLLER_WORKFLOW,
            poller_input(settings, tenant_id),
            id=poller_schedule_id(tenant_id),  # the server appends the scheduled time
            task_queue=task_queue or settings.temporal.task_queue,
            # A stuck pass must not hold the schedule forever (overlapping passes are skipped).
            execution_timeout=max(every * 5, timedelta(minutes=5)),
            static_summary=f"Poll alerts_v2 of tenant {tenant_id}",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # SKIP: one pass per tenant at a time, so two passes never read the same cursor.
        # Catch-up of one interval: after an outage one pass covers the gap (the cursor does).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, timedelta(minutes=1))),
    )


async def install(client: Client, settings: Settings, tenants: list[str] | None = None,
                  task_queue: str | None = None) -> list[str]:
    """Create or update the poller schedule of each tenant (default: every configured tenant)."""
    installed = []
    for tenant_id in tenants or [t.tenant_id for t in settings.tenants]:
        settings.tenant(tenant_id)  # KeyError for a tenant that is not configured
        schedule = poller_schedule(settings, tenant_id, task_queue)
        schedule_id = poller_schedule_id(tenant_id)
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:

            def replace(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                # Keep the schedule's state (paused, note): an operator's pause outlives a reinstall.
                return ScheduleUpdate(schedule=dataclasses.replace(new, state=current.description.schedule.state))

            await client.get_schedule_handle(schedule_id).update(replace)
        installed.append(schedule_id)
    return installed


async def remove(client: Client, tenants: list[str]) -> list[str]:
    removed = []
    for tenant_id in tenants:
        await client.get_schedule_handle(poller_schedule_id(tenant_id)).delete()
        removed.append(poller_schedule_id(tenant_id))
    return removed


async def trigger(client: Client, tenant_id: str) -> None:
    """Run one pass now (it continues from the schedule's cursor like any scheduled pass)."""
    await client.get_schedule_handle(poller_schedule_id(tenant_id)).trigger(overlap=ScheduleOverlapPolicy.SKIP)
