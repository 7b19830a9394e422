"""Two `quell worker` processes share one pace: the tenant's quota pacer hands out the turns of
both, so together they stay within what one of them may send (a pace each would be twice that)."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from emulator.server import serving_emulator
from tests.e2e.storm import HUNTING_QUOTA, outcome, storm_input, storm_scenario, storm_settings
from tests.conftest import eventually
from tests.e2e.test_worker_crash import start_worker
from workflows.case import ConnectorCaseWorkflow
from workflows.types import CaseReport

CASES = 12
HUNTING_ACTIVITIES = {"evidence.mail-stats", "evidence.admin-sign-ins"}


async def hunting_workers(handle: WorkflowHandle) -> set[str]:
    """The identities of the workers that started the case's hunting activities."""
    history = await handle.fetch_history()
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
    return {e.activity_task_started_event_attributes.identity for e in history.events
            if e.HasField("activity_task_started_event_attributes")
            and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] in HUNTING_ACTIVITIES}


async def activity_pollers(client: Client, queue: str) -> set[str]:
    """The identities polling the task queue for activities."""
    answer = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    return {p.identity for p in answer.pollers}


async def both_polling(client: Client, queue: str) -> bool:
    return len(await activity_pollers(client, queue)) >= 2


async def test_two_worker_processes_keep_one_pace(client: Client, cert_dir, tmp_path):
    scenario = storm_scenario()
    async with serving_emulator(scenario, cert_dir, quotas=HUNTING_QUOTA) as emulator:
        settings = storm_settings(scenario, emulator.base_url, paced=True)
        settings.temporal.task_queue = f"two-workers-{uuid.uuid4().hex[:8]}"
        workers = [start_worker(settings, client, tmp_path / f"worker-{i}.log") for i in range(2)]
        try:
            # Both processes poll before the first case starts: one that starts late would find no work.
            await eventually(lambda: both_polling(client, settings.temporal.task_queue), bool, timeout=120)
            handles = [
                await client.start_workflow(ConnectorCaseWorkflow.run, storm_input(scenario, settings),
                                            id=f"two-workers-{i}-{uuid.uuid4().hex[:8]}",
                                            task_queue=settings.temporal.task_queue)
                for i in range(CASES)
            ]
            async with asyncio.timeout(120):
                reports = [CaseReport.model_validate((await h.result()).model_dump()) for h in handles]
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait()

    assert all(outcome(r) == outcome(reports[0]) for r in reports)
    assert outcome(reports[0])[:2] == ("completed", scenario.expected.verdict)
    identities = set().union(*[await hunting_workers(h) for h in handles])
    assert len(identities) == 2, identities  # both processes ran hunting activities
    hunting = emulator.state.throttling.summary()["hunting"]
    print(f"\ntwo workers: {hunting['calls']} hunting calls, 429s {hunting['throttled']}, "
          f"early retries {hunting['early_retries']}, calls while throttled {hunting['while_throttled']}")
    # One pace for both: at most 20 hunting calls in any 5 s against a quota of 30 (two paces would be 40).
    assert hunting["throttled"] <= 2 and hunting["early_retries"] == 0
    queue = settings.temporal.task_queue
    pacers = [w async for w in client.list_workflows(
        f"TaskQueue = '{queue}' AND WorkflowType = 'quota-pacer' AND ExecutionStatus = 'Running'")]
    assert len(pacers) == 1
