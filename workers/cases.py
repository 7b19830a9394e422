"""Operations on cases shared by the intake API, the CLI and the scenario runner.

Everything goes through Temporal: a case is a workflow, its state is read by query, and
decisions are sent as the validated `decide` update.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from config.settings import Settings
from workers.alert_payloads import case_id
from workflows import search_attributes as sa
from workflows.case import ConnectorCaseWorkflow
from workflows.types import (
    AlertRef,
    CaseInput,
    CaseReport,
    CaseSummary,
    Decision,
    DecisionReceipt,
    PendingApproval,
)


class DecisionRefused(Exception):
    """The workflow's validator refused a decision; the message is its reason."""


def case_input(settings: Settings, alert: AlertRef) -> CaseInput:
    tenant = settings.tenant(alert.tenant_id)
    return CaseInput(
        tenant_id=alert.tenant_id,
        alert=alert,
        organization=tenant.organization,
        thresholds=settings.thresholds,
        policy=settings.approval,
        mode=settings.mode,
    )


async def open_case(client: Client, case: CaseInput, task_queue: str) -> WorkflowHandle:
    """Start the case or, if it is running, hand it the alert (signal-with-start)."""
    workflow_id = case_id(case.alert)
    return await client.start_workflow(
        ConnectorCaseWorkflow.run,
        case,
        id=workflow_id,
        task_queue=task_queue,
        start_signal="alert_received",
        start_signal_args=[case.alert],
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.TENANT, case.tenant_id)]),
        static_summary=f"Suspicious connector activity, alert {case.alert.alert_id}",
    )


def handle(client: Client, case: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(ConnectorCaseWorkflow.run, case)


async def status(client: Client, case: str) -> CaseSummary:
    return await handle(client, case).query(ConnectorCaseWorkflow.status)


async def report(client: Client, case: str) -> CaseReport:
    return await handle(client, case).query(ConnectorCaseWorkflow.report)


async def pending(client: Client, case: str) -> list[PendingApproval]:
    return await handle(client, case).query(ConnectorCaseWorkflow.pending)


async def open_cases(client: Client, waiting_only: bool = False) -> list[str]:
    query = "WorkflowType = 'connector-case'"
    query += " AND QuellPendingApproval = true" if waiting_only else " AND ExecutionStatus = 'Running'"
    return [wf.id async for wf in client.list_workflows(query)]


async def all_pending(client: Client) -> list[PendingApproval]:
    found: list[PendingApproval] = []
    for case in await open_cases(client, waiting_only=True):
        found.extend(await pending(client, case))
    return found


async def decide(client: Client, case: str, decision: Decision) -> DecisionReceipt:
    try:
        return await handle(client, case).execute_update(ConnectorCaseWorkflow.decide, decision)
    except WorkflowUpdateFailedError as failed:
        raise DecisionRefused(str(failed.cause.message if failed.cause else failed)) from None


async def current_plan_hash(client: Client, case: str) -> str:
    summary = await status(client, case)
    if not summary.pending:
        raise DecisionRefused(f"case {case} has nothing waiting for approval")
    return summary.pending[0].plan_hash
