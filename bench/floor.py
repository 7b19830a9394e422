"""Temporal's floor for "time to verdict / slowest evidence", one case at a time: a workflow with
nothing of quell's in it. Its first task records as many patch markers as a new case does and
schedules one read, which sleeps as long as the slowest evidence read of quell's cases took (p50);
when the read is back it upserts a verdict. Measured from its history as a case is
(`bench.storm.case_figures`), on the same dev server, by a worker in the bench's process (the
SDK's defaults), one workflow at a time: what this machine's Temporal round trips alone cost
around one read, against which quell's own ratio can be read. (Three reads at once, as a case's
first task schedules, cost more: 1.16–1.21, their completions queue for the worker's one loop.)
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa

PATCH_MARKERS = 7
"""The patch markers of a new case's first workflow task (workflows/case.py `run`)."""


@activity.defn(name="evidence.floor-read")
async def floor_read(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "read"


@workflow.defn(name="bench-floor")
class FloorWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> None:
        for marker in range(PATCH_MARKERS):
            workflow.patched(f"floor-{marker}")
        await workflow.execute_activity(floor_read, seconds, start_to_close_timeout=timedelta(seconds=30))
        workflow.upsert_search_attributes([sa.VERDICT.value_set("floor")])


async def floor_runs(client: Client, seconds: float, count: int) -> list[str]:
    """Run `count` floor workflows one after the other in `client`'s namespace; their ids."""
    queue = f"bench-floor-{uuid.uuid4().hex[:8]}"
    ids = [f"bench-floor/{uuid.uuid4().hex}" for _ in range(count)]
    async with Worker(client, task_queue=queue, workflows=[FloorWorkflow], activities=[floor_read]):
        for workflow_id in ids:
            await client.execute_workflow(FloorWorkflow.run, seconds, id=workflow_id, task_queue=queue)
    return ids
