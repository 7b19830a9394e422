"""Waiting for analysts, on the time-skipping server: reminders, escalation and expiry.

Real activities run against the emulator; only the waiting is skipped. What was sent is read
from the workflow history, as an operator would in the Temporal UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.scenario import load_scenario
from workers.scenarios import RunOptions, tenant_stack
from tests.conftest import PROJECT_SCENARIOS


async def notifications_sent(handle) -> list[str]:
    kinds = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "notify.send":
                payload = attributes.input.payloads[0].data
                kinds.append(next(k for k in ("approval_requested", "reminder", "escalation", "expired")
                                  if f'"{k}"'.encode() in payload))
    return kinds


async def test_unanswered_approvals_remind_escalate_and_expire(time_skipping, cert_dir):
    client = time_skipping.client
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    async with tenant_stack(client, scenario, RunOptions(), {}, cert_dir) as stack:
        settings = stack.settings.model_copy(
            update={"approval": stack.settings.approval.model_copy(update=dict(
                remind_every=timedelta(hours=1),
                escalate_after_reminders=2,
                expire_after=timedelta(hours=3, minutes=30),
            ))}
        )
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        handle = await cases.open_case(client, cases.case_input(settings, alert), settings.temporal.task_queue)
        report = await handle.result()  # the server skips the three and a half hours

    statuses = {r.action.kind: r.status for r in report.actions}
    assert statuses["revert_connector_change"] == "expired"
    assert statuses["unblock_connector"] in ("skipped", "expired")
    assert statuses["classify_alert"] == "done"  # auto actions still run
    assert report.case_status == "completed"
    sent = await notifications_sent(handle)
    assert sent[0] == "approval_requested"
    assert sent.count("reminder") == 1 and sent.count("escalation") >= 1
    assert "expired" in sent


async def test_a_day_long_wait_expires_on_the_time_skipping_server(time_skipping, cert_dir):
    """Eight hours of an unanswered approval pass in test time; the case still closes."""
    scenario = load_scenario(PROJECT_SCENARIOS / "fp-scanner-relay-normal-traffic.yaml")
    async with tenant_stack(time_skipping.client, scenario, RunOptions(), {}, cert_dir) as stack:
        settings = stack.settings.model_copy(update={"approval": stack.settings.approval.model_copy(
            update={"expire_after": timedelta(hours=8)})})
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        # The handle from the start is the time-skipping one: awaiting it lets the server skip.
        handle = await cases.open_case(time_skipping.client, cases.case_input(settings, alert),
                                       settings.temporal.task_queue)
        report = await handle.result()
    statuses = {r.action.kind: r.status for r in report.actions}
    assert report.verdict == "false_positive"
    assert statuses == {"comment_alert": "done", "unblock_connector": "expired", "classify_alert": "done"}
    unblock = next(r for r in report.actions if r.action.kind == "unblock_connector")
    assert unblock.decided_at - report.started_at >= timedelta(hours=8)
