"""The order a case reads its evidence in (patch `parallel-evidence`), read from its history as an
operator would in the Temporal UI: the audit query starts with the connector's resolution, the
connector's mail waits for nothing but the resolution, the sign-ins for the resolution and the
directory. Real activities against the emulator; the time-skipping server skips the waiting.
"""

from __future__ import annotations

from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.scenario import Scenario, load_scenario
from workers.scenarios import RunOptions, tenant_stack
from workflows.types import CaseReport
from tests.conftest import PROJECT_SCENARIOS

HYBRID = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
CONNECTORS_DOWN = [{"api": "exo:Get-InboundConnector", "status": 500}, {"api": "exo:Get-OutboundConnector", "status": 500}]
CLOSED = (EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)


def with_faults(faults: list[dict[str, Any]]) -> Scenario:
    data = yaml.safe_load(HYBRID.read_text())
    return load_scenario(yaml.safe_dump({**data, "faults": faults}, sort_keys=False))


async def run_case(time_skipping, cert_dir, scenario: Scenario) -> tuple[CaseReport, list[HistoryEvent]]:
    """The case closed (its approvals expire unanswered) and its history."""
    client = time_skipping.client
    async with tenant_stack(client, scenario, RunOptions(), {}, cert_dir) as stack:
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        handle = await cases.open_case(client, cases.case_input(stack.settings, alert), stack.settings.temporal.task_queue)
        report = await handle.result()
    return report, [event async for event in handle.fetch_history_events()]


class Reads:
    """Each activity's scheduling and closing events, by activity type (the last of each)."""

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.scheduled: dict[str, HistoryEvent] = {}
        self.closed: dict[str, HistoryEvent] = {}
        kinds: dict[int, str] = {}
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                kinds[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
                self.scheduled[kinds[event.event_id]] = event
            elif event.event_type in CLOSED:
                attributes = (event.activity_task_completed_event_attributes
                              if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                              else event.activity_task_failed_event_attributes)
                self.closed[kinds[attributes.scheduled_event_id]] = event
        self._tasks = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]

    def scheduled_by(self, kind: str) -> int:
        """The workflow task (its completed event: the last before the commands' events) that
        scheduled the activity."""
        return max(task for task in self._tasks if task < self.scheduled[kind].event_id)

    def first_task_after(self, kind: str) -> int:
        """The first workflow task completed after the activity closed: the one its result woke."""
        return min(task for task in self._tasks if task > self.closed[kind].event_id)

    def evidence(self) -> set[str]:
        return {kind for kind in self.scheduled if kind.startswith("evidence.")}


async def test_a_resolved_case_reads_its_mail_as_soon_as_the_connector_is_known(time_skipping, cert_dir) -> None:
    report, events = await run_case(time_skipping, cert_dir, load_scenario(HYBRID))
    reads = Reads(events)

    assert report.verdict == "true_positive"
    assert reads.evidence() == {"evidence.resolve-connector", "evidence.audit-log", "evidence.directory-accounts",
                                "evidence.mail-stats", "evidence.restricted-entities", "evidence.admin-sign-ins"}
    # The audit query starts with the resolution: it reads every connector's changes.
    assert reads.scheduled_by("evidence.audit-log") == reads.scheduled_by("evidence.resolve-connector")
    # The mail (which reads the accepted domains itself) and the restrictions wait for the resolution alone.
    after_resolution = reads.first_task_after("evidence.resolve-connector")
    assert reads.scheduled_by("evidence.mail-stats") == after_resolution
    assert reads.scheduled_by("evidence.restricted-entities") == after_resolution
    # The directory waits for the audit log alone; the sign-ins for the directory (its accounts) too.
    assert reads.scheduled_by("evidence.directory-accounts") == reads.first_task_after("evidence.audit-log")
    assert reads.scheduled_by("evidence.admin-sign-ins") > reads.closed["evidence.directory-accounts"].event_id
    # Each read says in the UI what it reads.
    assert all(event.user_metadata.HasField("summary") for event in reads.scheduled.values()), [
        kind for kind, event in reads.scheduled.items() if not event.user_metadata.HasField("summary")]


async def test_a_case_whose_connector_cannot_be_resolved_still_sweeps_and_changes_nothing(time_skipping, cert_dir) -> None:
    report, events = await run_case(time_skipping, cert_dir, with_faults(CONNECTORS_DOWN))
    reads = Reads(events)

    assert report.verdict == "needs_review"
    assert "evidence_unavailable" in {f.id for f in report.findings}
    assert report.connector is None
    # Nothing destructive is planned: only the alert write-backs.
    assert {r.action.kind for r in report.actions} == {"comment_alert", "classify_alert"}
    # The audit query started with the resolution and answered (the sweep reads it); nothing waited
    # for a connector that is not known.
    assert reads.closed["evidence.resolve-connector"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    assert reads.scheduled_by("evidence.audit-log") == reads.scheduled_by("evidence.resolve-connector")
    assert reads.closed["evidence.audit-log"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    assert reads.evidence() == {"evidence.resolve-connector", "evidence.audit-log", "evidence.directory-accounts"}
