"""The tenant unreachable for two minutes (nothing listens on its port: every connection is
refused), on the time-skipping server: every evidence source spends its retries, the verdict is
needs_review with evidence_unavailable, and nothing is changed.

The case cannot come back when the tenant does: the tenant retry policy (workflows/retries.py,
4 attempts, 1 + 2 + 4 s apart) is spent seven seconds into each source, so the case has closed
(about 28 s: two evidence reads, two write-backs) long before the two minutes are over. What it leaves is an alert nobody classified and a case whose
alert write-backs failed (`needs_manual`), which is what an analyst must see.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from activities import cases
from activities.alert_parsing import parse_alerts
from activities.clients import ClientPool
from emulator.scenario import load_scenario
from workers.scenarios import RunOptions, scenario_settings
from workers.worker import new_worker
from workflows import retries
from tests.conftest import PROJECT_SCENARIOS, closed_activities, free_port

OUTAGE = timedelta(minutes=2)


def retry_budget(policy) -> timedelta:
    """The backoff an activity waits through before its last attempt fails."""
    return sum((policy.initial_interval * policy.backoff_coefficient**n for n in range(policy.maximum_attempts - 1)),
               timedelta())


async def failed_attempts(handle) -> dict[str, tuple[int, str]]:
    """Activity type -> (the attempt that failed last, its message), for every failed activity."""
    return {
        kind: (attempt, event.activity_task_failed_event_attributes.failure.message)
        for kind, attempt, event in await closed_activities(handle)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    }


async def test_an_unreachable_tenant_ends_in_needs_review_and_nothing_changes(time_skipping):
    client = time_skipping.client
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    unreachable = f"https://127.0.0.1:{free_port()}"  # token endpoint, Graph and Exchange alike
    settings = scenario_settings(scenario, unreachable, RunOptions(approval_timeout=300), {})
    pool = ClientPool(settings.tenants)
    try:
        async with new_worker(client, settings, pool):
            [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
            handle = await cases.open_case(client, cases.case_input(settings, alert), settings.temporal.task_queue)
            report = await handle.result()  # the server skips the retries' backoff
    finally:
        await pool.aclose()

    assert report.verdict == "needs_review"
    assert "evidence_unavailable" in {f.id for f in report.findings}
    # Nothing destructive is planned, and nothing planned was done: the write-backs could not connect.
    assert {r.action.kind for r in report.actions} == {"comment_alert", "classify_alert"}
    assert {r.status for r in report.actions} == {"failed"}
    assert report.case_status == "needs_manual"

    failed = await failed_attempts(handle)
    evidence = {kind for kind in failed if kind.startswith("evidence.")}
    # Unresolved: the reads that start with the resolution (the sweep's audit read, the mail read).
    assert evidence == {"evidence.resolve-connector", "evidence.audit-log", "evidence.mail-stats"}
    assert all(failed[kind][0] == retries.TENANT.maximum_attempts for kind in failed)
    assert all("connect" in message.casefold() for _, message in failed.values()), failed
    # All of it inside the outage: the case could not have seen the tenant come back. Each refused
    # attempt fails at once (no second retry layer inside it, e.g. azure-core's on token requests).
    assert report.finished_at is not None
    took = report.finished_at - report.started_at
    assert took < len(failed) * retry_budget(retries.TENANT) + timedelta(seconds=10) < OUTAGE
