"""The order a case reads its evidence in (patches `parallel-evidence`, `mail-beside-resolution`),
read from its history as an operator would in the Temporal UI: the audit query and the mail of the
connector the alert's configuration names start with the connector's resolution, the restrictions
wait for nothing but the resolution, the sign-ins for the resolution and the directory. Real
activities against the emulator; the time-skipping server skips the waiting.
"""

from __future__ import annotations

from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.expectations import HUNTING
from emulator.scenario import Scenario, load_scenario
from workers.scenarios import RunOptions, tenant_stack
from workflows.types import CaseReport
from tests.conftest import PROJECT_SCENARIOS

HYBRID = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
TWO_CONNECTORS = PROJECT_SCENARIOS / "nr-alert-ip-matches-two-connectors.yaml"
CONNECTORS_DOWN = [{"api": "exo:Get-InboundConnector", "status": 500}, {"api": "exo:Get-OutboundConnector", "status": 500}]
CLOSED = (EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)


def with_faults(faults: list[dict[str, Any]]) -> Scenario:
    data = yaml.safe_load(HYBRID.read_text())
    return load_scenario(yaml.safe_dump({**data, "faults": faults}, sort_keys=False))


async def run_case(time_skipping, cert_dir, scenario: Scenario) -> tuple[CaseReport, list[HistoryEvent], list[dict[str, Any]]]:
    """The case closed (its approvals expire unanswered), its history and the tenant's call log."""
    client = time_skipping.client
    async with tenant_stack(client, scenario, RunOptions(), {}, cert_dir) as stack:
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        handle = await cases.open_case(client, cases.case_input(stack.settings, alert), stack.settings.temporal.task_queue)
        report = await handle.result()
        calls = list(stack.emulator.state.calls)
    return report, [event async for event in handle.fetch_history_events()], calls


def connector_reads(calls: list[dict[str, Any]]) -> int:
    return sum(c["api"] == "exo:Get-InboundConnector" for c in calls)


def mail_queries(calls: list[dict[str, Any]]) -> int:
    """Hunting calls of the connector-mail query (the only one with a connectorName parameter)."""
    return sum("connectorName" in (c.get("hunting_query") or "") for c in calls if c["api"] == HUNTING)


class Reads:
    """Each activity's scheduling and closing events, by activity type (the last of each)."""

    def __init__(self, events: list[HistoryEvent]) -> None:
        self.scheduled: dict[str, HistoryEvent] = {}
        self.closed: dict[str, HistoryEvent] = {}
        kinds: dict[int, str] = {}
        self._kinds: list[str] = []
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                kinds[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
                self.scheduled[kinds[event.event_id]] = event
                self._kinds.append(kinds[event.event_id])
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

    def count(self, kind: str) -> int:
        """How many times the activity was scheduled."""
        return self._kinds.count(kind)

    def evidence(self) -> set[str]:
        return {kind for kind in self.scheduled if kind.startswith("evidence.")}


async def test_the_mail_of_the_connector_the_alert_configures_is_read_beside_the_resolution(time_skipping, cert_dir) -> None:
    report, events, calls = await run_case(time_skipping, cert_dir, load_scenario(HYBRID))
    reads = Reads(events)

    assert report.verdict == "true_positive"
    assert reads.evidence() == {"evidence.resolve-connector", "evidence.audit-log", "evidence.directory-accounts",
                                "evidence.mail-stats", "evidence.restricted-entities", "evidence.admin-sign-ins"}
    # The audit query and the mail (which reads the accepted domains itself) start with the
    # resolution: one reads every connector's changes, the other takes the connector the alert's
    # IP configures from the connector list the resolution reads.
    first = reads.scheduled_by("evidence.resolve-connector")
    assert reads.scheduled_by("evidence.audit-log") == first
    assert reads.scheduled_by("evidence.mail-stats") == first
    assert reads.count("evidence.mail-stats") == 1 and mail_queries(calls) == 1
    assert connector_reads(calls) == 1, "the resolution and the mail share one read of the connector list"
    # The restrictions wait for the resolution alone.
    assert reads.scheduled_by("evidence.restricted-entities") == reads.first_task_after("evidence.resolve-connector")
    # The directory waits for the audit log alone; the sign-ins for the directory (its accounts) too.
    assert reads.scheduled_by("evidence.directory-accounts") == reads.first_task_after("evidence.audit-log")
    assert reads.scheduled_by("evidence.admin-sign-ins") > reads.closed["evidence.directory-accounts"].event_id
    # Each read says in the UI what it reads.
    assert all(event.user_metadata.HasField("summary") for event in reads.scheduled.values()), [
        kind for kind, event in reads.scheduled.items() if not event.user_metadata.HasField("summary")]


async def test_a_mail_read_beside_a_resolution_that_settles_on_no_connector_reads_no_mail(time_skipping, cert_dir) -> None:
    report, events, calls = await run_case(time_skipping, cert_dir, load_scenario(TWO_CONNECTORS))
    reads = Reads(events)

    assert report.connector is None
    assert reads.scheduled_by("evidence.mail-stats") == reads.scheduled_by("evidence.resolve-connector")
    assert reads.closed["evidence.mail-stats"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    assert reads.count("evidence.mail-stats") == 1 and mail_queries(calls) == 0
    assert connector_reads(calls) == 1


async def test_the_mail_of_a_connector_found_through_telemetry_is_read_once_the_resolution_answers(
    time_skipping, cert_dir
) -> None:
    data = yaml.safe_load(HYBRID.read_text())
    # The connector no longer lists the alert's IP; its mail in EmailEvents still came from it.
    data["tenant"]["inbound_connectors"][0]["SenderIPAddresses"] = ["203.0.113.77"]
    report, events, calls = await run_case(time_skipping, cert_dir, load_scenario(yaml.safe_dump(data, sort_keys=False)))
    reads = Reads(events)

    assert report.connector == "Contoso Hybrid"
    assert reads.count("evidence.mail-stats") == 2  # the early read found no configured connector
    assert reads.scheduled_by("evidence.mail-stats") == reads.first_task_after("evidence.resolve-connector")
    assert mail_queries(calls) == 1
    assert "evidence_unavailable" not in {f.id for f in report.findings}


async def test_a_case_whose_connector_cannot_be_resolved_still_sweeps_and_changes_nothing(time_skipping, cert_dir) -> None:
    report, events, calls = await run_case(time_skipping, cert_dir, with_faults(CONNECTORS_DOWN))
    reads = Reads(events)

    assert report.verdict == "needs_review"
    assert "evidence_unavailable" in {f.id for f in report.findings}
    assert report.connector is None
    # Nothing destructive is planned: only the alert write-backs.
    assert {r.action.kind for r in report.actions} == {"comment_alert", "classify_alert"}
    # The audit query started with the resolution and answered (the sweep reads it); the mail read
    # that started with it failed as it did, without a mail query; nothing waited for a connector
    # that is not known.
    assert reads.closed["evidence.resolve-connector"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    assert reads.scheduled_by("evidence.audit-log") == reads.scheduled_by("evidence.resolve-connector")
    assert reads.closed["evidence.audit-log"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    assert reads.closed["evidence.mail-stats"].event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    assert mail_queries(calls) == 0
    assert reads.evidence() == {"evidence.resolve-connector", "evidence.audit-log", "evidence.directory-accounts",
                                "evidence.mail-stats"}
