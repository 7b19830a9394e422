"""Operations on cases shared by the poller activity, the intake API, the CLI and the scenario runner.

These are not activities: they are the Temporal client's side of the case workflow. A case is a
workflow whose id says which alerts belong to it (`case_id`), it is opened by signal-with-start,
its state is read by query, and decisions are sent as the validated `decide` update.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings
from workflows import case_view
from workflows import search_attributes as sa
from workflows import signatures
from workflows.case import ConnectorCaseWorkflow
from workflows.types import (
    AbsorbedAlert,
    AlertRef,
    CaseInput,
    CaseReport,
    CaseSummary,
    Decision,
    DecisionReceipt,
    OpenedCase,
    PendingApproval,
)


REUSE = {"refuse": WorkflowIDReusePolicy.REJECT_DUPLICATE, "start": WorkflowIDReusePolicy.ALLOW_DUPLICATE}


class DecisionRefused(Exception):
    """The workflow's validator refused a decision; the message is its reason."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.:@_-]+", "-", text.casefold()).strip("-")


def case_key(alert: AlertRef) -> str:
    """The part of the case id after the tenant, so related alerts meet in one case.

    The connector when the alert names it; else the connector's source IP from the evidence
    (alerts about one relaying connector carry the same IP); else the alert itself.
    """
    if alert.connector_hint:
        return "connector/" + _slug(alert.connector_hint)
    if alert.ip_addresses:
        return "ip/" + _slug(sorted(alert.ip_addresses)[0])
    return f"alert/{_slug(alert.alert_id)}"


def case_id(alert: AlertRef) -> str:
    return f"connector-case/{alert.tenant_id}/{case_key(alert)}"


def case_input(settings: Settings, alert: AlertRef, related_cases: list[str] | None = None) -> CaseInput:
    tenant = settings.tenant(alert.tenant_id)
    return CaseInput(
        tenant_id=alert.tenant_id,
        alert=alert,
        organization=tenant.organization,
        thresholds=settings.thresholds,
        policy=settings.approval.policy(),
        mode=settings.mode,
        mfa_report_only=settings.mfa_report_only,
        related_cases=related_cases or [],
        history=settings.history,
    )


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def recent_closed_runs(
    client: Client, workflow_id: str, since: datetime, task_queue: str
) -> list[tuple[str, str]]:
    """(workflow id, run id) of the case runs with this id that closed after `since`, newest first.
    A run that continued as new did not close the case (its last run did), so it is not one.

    A case id is `connector-case/{tenant}/{key}`, so this never crosses tenants. Only cases of
    this deployment's task queue count: deployments (and test or scenario runs, each on its own
    queue) that share a Temporal namespace do not see each other's cases as related.
    """
    query = (
        f"WorkflowId = {_quoted(workflow_id)} AND TaskQueue = {_quoted(task_queue)} "
        f"AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew' "
        f"AND CloseTime > {_quoted(since.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ'))}"
    )
    runs = [wf async for wf in client.list_workflows(query)]
    runs.sort(key=lambda wf: wf.close_time or wf.start_time, reverse=True)
    return [(wf.id, wf.run_id) for wf in runs]


async def _absorbed(client: Client, workflow_id: str, run_id: str) -> list[str]:
    """Alert ids a closed run absorbed, from its result (no worker needed); [] unless it completed."""
    run = client.get_workflow_handle_for(ConnectorCaseWorkflow.run, workflow_id, run_id=run_id)
    if (await run.describe()).status != WorkflowExecutionStatus.COMPLETED:
        return []
    return (await run.result(follow_runs=False)).alerts


async def _related_runs(
    client: Client, refused: WorkflowAlreadyStartedError, since: datetime, task_queue: str
) -> list[tuple[str, str]]:
    """The closed runs for the refused case id that count (`recent_closed_runs`), including the
    run whose close refused the start even when visibility has not indexed that close yet."""
    closed = await recent_closed_runs(client, refused.workflow_id, since, task_queue)
    if refused.run_id and all(run_id != refused.run_id for _, run_id in closed):
        latest = await client.get_workflow_handle(refused.workflow_id, run_id=refused.run_id).describe()
        if latest.task_queue == task_queue and latest.close_time is not None and latest.close_time > since:
            closed.insert(0, (latest.id, latest.run_id))
    return closed


async def accept_alert(client: Client, settings: Settings, alert: AlertRef, task_queue: str) -> OpenedCase:
    """The one intake path (webhook, Sentinel, streaming, poller): signal-with-start, correlating
    with closed cases only when there are some.

    A running case for the same tenant and key absorbs the alert, and a key that never had a case
    starts one: both are one signal-with-start, refused (`REJECT_DUPLICATE`) when a closed run has
    the id. Only then does intake look for the cases for that key that closed within
    `intake.related_window`: an alert one of them already absorbed is a late duplicate delivery and
    is acknowledged without a new case; otherwise the new case names them. Safe to repeat after any
    failure: every step reads before it writes, and the write is a signal-with-start on a
    deterministic id.
    """
    try:
        started = await open_case(client, case_input(settings, alert), task_queue, if_closed="refuse")
        return OpenedCase(case_id=started.id, run_id=started.result_run_id, alert_id=alert.alert_id,
                          tenant_id=alert.tenant_id)
    except WorkflowAlreadyStartedError as refused:
        since = datetime.now(timezone.utc) - settings.intake.related_window
        closed = await _related_runs(client, refused, since, task_queue)
    for wid, run_id in closed:
        if alert.alert_id in await _absorbed(client, wid, run_id):
            return OpenedCase(
                case_id=wid, run_id=run_id, alert_id=alert.alert_id, tenant_id=alert.tenant_id, duplicate=True
            )
    related = [f"{wid}@{run_id}" for wid, run_id in closed]
    started = await open_case(client, case_input(settings, alert, related), task_queue)
    return OpenedCase(
        case_id=started.id,
        run_id=started.result_run_id,
        alert_id=alert.alert_id,
        tenant_id=alert.tenant_id,
        related_cases=related,
    )


async def open_case(
    client: Client, case: CaseInput, task_queue: str, if_closed: Literal["refuse", "start"] = "start"
) -> WorkflowHandle:
    """Start the case or, if it is running, hand it the alert (signal-with-start). The signal
    names the alert only (`AbsorbedAlert`): a new case gets the whole alert in its input. With no
    run running, `if_closed="refuse"` raises `WorkflowAlreadyStartedError` (naming the latest run)
    when a closed run has the id, instead of starting a new run."""
    workflow_id = case_id(case.alert)
    return await client.start_workflow(
        ConnectorCaseWorkflow.run,
        case,
        id=workflow_id,
        task_queue=task_queue,
        id_reuse_policy=REUSE[if_closed],
        start_signal="alert_received",
        start_signal_args=[AbsorbedAlert(alert_id=case.alert.alert_id, tenant_id=case.tenant_id)],
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(sa.TENANT, case.tenant_id),
            SearchAttributePair(sa.STAGE, "resolving"),
            SearchAttributePair(sa.PENDING_APPROVAL, False),
        ]),
        static_summary=case_view.static_summary(case),
        static_details=case_view.static_details(case),
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
    """Running cases (each once: a case's earlier runs, which continued as new, are closed)."""
    query = "WorkflowType = 'connector-case' AND ExecutionStatus = 'Running'"
    query += " AND QuellPendingApproval = true" if waiting_only else ""
    return [wf.id async for wf in client.list_workflows(query)]


async def all_pending(client: Client) -> list[PendingApproval]:
    found: list[PendingApproval] = []
    for case in await open_cases(client, waiting_only=True):
        found.extend(await pending(client, case))
    return found


def new_decision(
    case: str,
    action_id: str,
    plan_hash: str,
    approver: str,
    approve: bool,
    reason: str,
    key: Ed25519PrivateKey | None,
) -> Decision:
    """A decision issued now with a fresh nonce, signed with `key` (unsigned without one)."""
    decision = Decision(
        case_id=case, action_id=action_id, plan_hash=plan_hash, approver=approver, approve=approve,
        reason=reason, issued_at=datetime.now(timezone.utc), nonce=secrets.token_hex(16),
    )
    return signatures.sign(decision, key) if key is not None else decision


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
