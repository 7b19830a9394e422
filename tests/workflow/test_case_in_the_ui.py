"""What a case leaves for the Temporal UI, read through the client on a real dev server.

A waiting case is listed by its search attributes and its current details say which action waits
for whom; its summary and details name the alert. A whole case leaves at most one search-attribute
upsert per workflow task and at most one cancelled reminder timer, so the decisions stay readable
among the events (patch `publish-once-per-task`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.scenario import load_scenario
from tests.conftest import PROJECT_SCENARIOS
from tests.conftest import eventually
from tests.intake.conftest import runs
from workers.scenarios import RunOptions, answer_approvals, isolated_namespace, run_scenario, tenant_stack
from workflows.types import CaseReport

WAITING = "QuellPendingApproval = true AND QuellStage = 'awaiting_approval' AND QuellVerdict = 'true_positive'"


async def current_details(client: Client, case: str) -> str:
    metadata = await cases.handle(client, case).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def test_a_waiting_case_is_listed_and_says_whom_it_waits_for(client: Client, cert_dir):
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    options = RunOptions(approval_timeout=300)
    async with isolated_namespace(client) as ns, tenant_stack(ns, scenario, options, {}, cert_dir) as stack:
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        handle = await cases.open_case(ns, cases.case_input(stack.settings, alert), stack.settings.temporal.task_queue)
        case = handle.id
        pending = await eventually(lambda: cases.pending(ns, case), bool)

        listed = await eventually(lambda: runs(ns, WAITING), lambda found: [r.id for r in found] == [case])
        assert listed[0].typed_search_attributes  # the list shows the attributes as columns
        facts = "**Stage:** awaiting approval · **Verdict:** true positive · **Connector:** Contoso Hybrid"
        details = await eventually(lambda: current_details(ns, case), lambda text: facts in text)
        first = pending[0]
        action = f"{first.action_id} {first.kind.replace('_', ' ')} {first.target}"
        assert f"**{action}** waits for 1 approval from soc1@contoso.com or soc2@contoso.com until " in details
        assert "No decisions yet." in details
        description = await handle.describe()
        assert await description.static_summary() == (
            f"Suspicious connector activity: alert {alert.alert_id}, tenant {scenario.tenant.id}")
        assert f"https://security.microsoft.com/alerts/{alert.alert_id}" in (await description.static_details() or "")

        result = asyncio.ensure_future(handle.result())
        async with asyncio.timeout(60):
            while not result.done():
                await answer_approvals(ns, case, scenario, stack.analysts)
                await asyncio.wait([result], timeout=0.1)
        report = CaseReport.model_validate(result.result().model_dump())
        assert report.case_status == "completed"
        closed = await current_details(ns, case)
        assert "**Stage:** closed" in closed and "Nothing waits for a decision." in closed
        assert f"**soc1@contoso.com** approved **{first.action_id} " in closed
        await eventually(lambda: runs(ns, WAITING), lambda found: found == [])


@pytest.mark.parametrize(("name", "approval_timeout", "decisions"), [
    ("tp-hijacked-connector-analyst-rejects-mfa", 60, 6),  # five approvals and one rejection
    ("tp-hijacked-connector-approvals-expire", 2, 0),  # every approval expires
])
async def test_a_case_upserts_at_most_once_per_workflow_task(
    client: Client, cert_dir, tmp_path: Path, name: str, approval_timeout: float, decisions: int
):
    scenario = load_scenario(PROJECT_SCENARIOS / f"{name}.yaml")
    options = RunOptions(approval_timeout=approval_timeout, history_dir=tmp_path, cert_dir=cert_dir)
    assert (await run_scenario(client, scenario, options))["case_status"] == "completed"
    events = json.loads((tmp_path / f"{scenario.id}.json").read_text())["events"]
    kinds = Counter(e["eventType"].removeprefix("EVENT_TYPE_") for e in events)
    # quell's own upserts: the SDK core adds one TemporalChangeVersion upsert per patch it records.
    upserts = Counter(
        e["upsertWorkflowSearchAttributesEventAttributes"]["workflowTaskCompletedEventId"]
        for e in events if "upsertWorkflowSearchAttributesEventAttributes" in e
        and set(e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"])
        != {"TemporalChangeVersion"}
    )
    assert kinds["WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == decisions
    assert upserts and max(upserts.values()) == 1, upserts
    assert kinds["TIMER_CANCELED"] <= 1 and kinds["TIMER_STARTED"] <= 1
