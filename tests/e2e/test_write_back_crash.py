"""A worker killed (SIGKILL) while alert write-backs wait for their quota turns: the attempt had
waited past half its heartbeat timeout without giving up (`activities/pacing.heartbeating`), and
the retry on a second worker writes back only to the alerts the first left, each alert once.

The write-backs run in a real `quell worker` process, paced by its tenant's quota pacer workflow.
A probe workflow in this process schedules them on that worker's task queue with a heartbeat
timeout of seconds (a case's is minutes), so Temporal notices the kill quickly.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from config.settings import QuotaSettings
    from emulator.scenario import load_scenario
    from emulator.server import EmulatorHandle, serving_emulator
    from workers.scenarios import scenario_analysts
    from workflows.types import (
        ActionInput,
        AlertWriteBackResult,
        AlertWriteBacks,
        FamilyQuota,
        Plan,
        PlannedAction,
    )
    from tests.conftest import PROJECT_SCENARIOS, eventually
    from tests.e2e.storm import UNLIMITED
    from tests.e2e.test_worker_crash import crash_settings, result_on_a_new_worker, start_worker

HEARTBEAT = timedelta(seconds=4)
"""Without `heartbeating`, an attempt waits at most half of this (2 s) for a turn."""
SECURITY = FamilyQuota(per_minute=300, burst=20)
"""The first Graph JSON batch of 20 requests goes at once; each later one (a batch's write, its
read again, the next batch's read) waits 4 s for its tokens, twice what an attempt without
`heartbeating` would wait."""
ALERTS = 40
"""Two batches of 20: the kill lands once the first is settled, so the retry has the second to do."""

READ, PATCH = "graph:GET /security/alerts_v2/{id}", "graph:PATCH /security/alerts_v2/{id}"
"""A JSON batch's requests, as the emulator logs them one by one."""


def alert_of(call: dict[str, Any]) -> str:
    return call["api"].rsplit("/", 1)[1]


def called_at(emulator: EmulatorHandle, pattern: str) -> list[datetime]:
    return [datetime.fromisoformat(c["at"]) for c in emulator.state.calls_matching(pattern)]


@workflow.defn(name="test-write-backs-probe")
class WriteBacksProbe:
    @workflow.run
    async def run(self, queue: str, batch: AlertWriteBacks) -> AlertWriteBackResult:
        return await workflow.execute_activity(
            "action.alert-write-backs", batch, task_queue=queue, result_type=AlertWriteBackResult,
            start_to_close_timeout=timedelta(minutes=1), heartbeat_timeout=HEARTBEAT,
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
        )


def classify(tenant_id: str, alert_id: str) -> ActionInput:
    """The example's classify action, which the default policy runs without approval."""
    action = PlannedAction(id="a1", kind="classify_alert", target=alert_id, stage="report", reason="test",
                           policy="auto", params={"alert_id": alert_id, "status": "resolved",
                                                  "classification": "truePositive",
                                                  "determination": "compromisedAccount"})
    return ActionInput(tenant_id=tenant_id, case_id="connector-case/test/write-backs", mode="enforce",
                       action=action, plan=Plan(actions=[action]))


async def test_sigkill_while_write_backs_wait_for_their_turns_writes_each_alert_once(client: Client, cert_dir, tmp_path):
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    async with serving_emulator(scenario, cert_dir) as emulator:
        alerts = emulator.state.data.alerts
        [example] = list(alerts)
        ids = [f"storm-{n}" for n in range(ALERTS)]
        for alert_id in ids:
            alerts[alert_id] = {**copy.deepcopy(alerts[example]), "id": alert_id}
        settings = crash_settings(scenario, emulator, scenario_analysts(scenario))
        settings.quotas = QuotaSettings(security=SECURITY, hunting=UNLIMITED, graph=UNLIMITED, exchange=UNLIMITED)
        batch = AlertWriteBacks(action=classify(scenario.tenant.id, example), alert_ids=ids)
        probe_queue = f"probe-{uuid.uuid4().hex[:8]}"

        first = start_worker(settings, client, tmp_path / "first.log")
        async with Worker(client, task_queue=probe_queue, workflows=[WriteBacksProbe]):
            handle = await client.start_workflow(WriteBacksProbe.run, args=[settings.temporal.task_queue, batch],
                                                 id=f"write-backs-{probe_queue}", task_queue=probe_queue)
            try:
                async def first_batch_settled_or_retried() -> tuple[Any, AlertWriteBackResult] | None:
                    [pending] = (await handle.describe()).raw_description.pending_activities or [None]
                    if pending is None:
                        return None
                    details = AlertWriteBackResult(outcomes=[])
                    if pending.heartbeat_details.payloads:
                        [details] = await client.data_converter.decode(pending.heartbeat_details.payloads,
                                                                       [AlertWriteBackResult])
                    return (pending, details) if pending.attempt > 1 or len(details.outcomes) >= 20 else None

                pending, details = await eventually(first_batch_settled_or_retried, bool, 60)
            finally:
                first.kill()  # SIGKILL while the attempt waits for its next batch's turn
                first.wait()
            assert first.returncode == -9
            killed_at = datetime.now(UTC)
            assert pending.attempt == 1 and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            assert {o.status for o in details.outcomes} == {"done"}
            first_batch = {o.alert_id for o in details.outcomes}
            # Within that attempt, the first write waited for its turn longer than half the heartbeat timeout.
            assert min(called_at(emulator, PATCH)) - min(called_at(emulator, READ)) > HEARTBEAT / 2 + timedelta(seconds=1)

            result = await result_on_a_new_worker(settings, client, handle, tmp_path / "second.log")

        assert [o.alert_id for o in result.outcomes] == ids
        assert {o.status for o in result.outcomes} == {"done"} and all(o.verified for o in result.outcomes)
        assert {alerts[a]["classification"] for a in ids} == {"truePositive"}
        patches = Counter(alert_of(c) for c in emulator.state.calls_matching(PATCH))
        assert patches == Counter(ids)  # each alert written once, across both workers
        after_kill = {alert_of(c) for pattern in (READ, PATCH) for c in emulator.state.calls_matching(pattern)
                      if datetime.fromisoformat(c["at"]) > killed_at}
        assert after_kill and not after_kill & first_batch  # the retry touched only what was left

        started = [e.activity_task_started_event_attributes async for e in handle.fetch_history_events()
                   if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        assert [s.attempt for s in started] == [2]  # only the completing attempt's start is recorded
        assert started[0].last_failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
