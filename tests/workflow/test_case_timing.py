"""Waiting for analysts, on the time-skipping server: reminders, escalation and expiry.

Real activities run against the emulator; only time is skipped. The audit of what was sent is
read from the workflow history, as an operator would in the Temporal UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from emulator.scenario import load_scenario
from workers import cases
from workers.alert_payloads import parse_alert
from workers.scenarios import RunOptions, tenant_stack
from workflows.types import ApprovalPolicy
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
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    async with tenant_stack(time_skipping.client, scenario, RunOptions(), {}, cert_dir) as stack:
        settings = stack.settings.model_copy(
            update={"approval": ApprovalPolicy(
                approvers=["soc1@contoso.com"],
                remind_every=timedelta(hours=1),
                escalate_after_reminders=2,
                expire_after=timedelta(hours=3, minutes=30),
            )}
        )
        alert = parse_alert(scenario.alert, scenario.tenant.id)
        case = await cases.open_case(time_skipping.client, cases.case_input(settings, alert),
                                     settings.temporal.task_queue)
        handle = cases.handle(time_skipping.client, case)
        report = await handle.result()  # the server skips the 3.5 hours of waiting

    statuses = {r.action.kind: r.status for r in report.actions}
    assert statuses["revert_connector_change"] == "expired"
    assert statuses["unblock_connector"] in ("skipped", "expired")
    assert statuses["classify_alert"] == "done"  # auto actions still run
    assert report.case_status == "completed"
    sent = await notifications_sent(handle)
    assert sent[0] == "approval_requested"
    assert sent.count("reminder") == 1 and sent.count("escalation") >= 1
    assert "expired" in sent
