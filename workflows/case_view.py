"""What the Temporal UI shows of a case: its summary and details, the current details, activity summaries.

Pure text from case state; the case workflow and the client that starts it call these. SOC
reviewers read a case there ("who approved what, when"), so the current details carry the
stage, what waits for whom and every decision with its approver, reason and plan hash.

The static summary and details are written at start for everyone with UI access to read. They
name ids only (tenant, alert, the connector the alert names), never a user: the UPN of an
approver or a target appears in current details and activity summaries, which are encrypted
like every payload when a codec is configured (docs/architecture.md, "Secrets").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from workflows.types import (
    ActionRecord,
    ApprovalPolicy,
    CaseInput,
    CaseStage,
    ClassifyParams,
    CommentParams,
    DecisionEntry,
    PlannedAction,
    VerdictKind,
)

DEFENDER_ALERT = "https://security.microsoft.com/alerts/{}"
SUMMARY_LIMIT = 200  # characters; the UI shows one line
ALERTS_SHOWN = 10
"""Alerts the current details link; a case that absorbed more shows its first and its latest."""


@dataclass(frozen=True)
class CaseView:
    """The part of the case's state the current details show."""

    stage: CaseStage
    verdict: VerdictKind | None
    connector: str | None
    alerts: list[str]
    records: list[ActionRecord]
    undecided: list[ActionRecord]
    trail: list[DecisionEntry]
    policy: ApprovalPolicy
    deadline: datetime | None
    plan_hash: str | None


def _md(text: str) -> str:
    """Text as Markdown shows it literally (a table cell included)."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text.replace("\n", " "))


def _words(value: str) -> str:
    return value.replace("_", " ")


def alert_link(alert_id: str) -> str:
    return f"[{_md(alert_id)}]({DEFENDER_ALERT.format(quote(alert_id, safe=''))})"


def static_summary(case: CaseInput) -> str:
    alert = case.alert
    about = f"connector {alert.connector_hint}" if alert.connector_hint else f"alert {alert.alert_id}"
    return f"{alert.title}: {about}, tenant {case.tenant_id}"[:SUMMARY_LIMIT]


def static_details(case: CaseInput) -> str:
    """Markdown: the alert (with its link to Defender), the tenant, the mode, ids only."""
    alert = case.alert
    rows = [
        ("Alert", f"{alert_link(alert.alert_id)}: {_md(alert.title)}"),
        ("Severity", _md(alert.severity)),
        ("Raised", f"{alert.created:%Y-%m-%d %H:%M} UTC" if alert.created else "unknown"),
        ("Tenant", f"`{case.tenant_id}`"),
        ("Connector named by the alert", _md(alert.connector_hint) if alert.connector_hint else "none"),
        ("Received by", _md(alert.source)),
        ("Mode", "enforce (changes wait for approval)" if case.mode == "enforce" else "dry run (changes nothing)"),
    ]
    if case.related_cases:
        rows.append(("Related closed cases", ", ".join(f"`{c}`" for c in case.related_cases)))
    return "\n".join(f"- **{name}:** {value}" for name, value in rows)


def continued(case: CaseInput, run: int) -> str:
    """What a run that continued the case shows above its current details: Temporal gives a run
    started by continue-as-new no static summary or details, so the case's own are repeated here."""
    return (f"**Run {run} of this case** (earlier runs continued as new to keep each history small): "
            f"{_md(static_summary(case))}\n\n{static_details(case)}")


def action_summary(action: PlannedAction, approved_by: list[str]) -> str:
    """Names the action, its target (the alert for alert write-backs) and who approved it."""
    params = action.params
    target = f"alert {params.alert_id}" if isinstance(params, ClassifyParams | CommentParams) else action.target
    return _summary(action, target, approved_by)


def write_back_summary(action: PlannedAction, alert_ids: list[str], approved_by: list[str]) -> str:
    """An alert write-back for a batch of alerts: how many, the first and the last."""
    target = f"alert {alert_ids[0]}" if len(alert_ids) == 1 else f"{len(alert_ids)} alerts, {alert_ids[0]} to {alert_ids[-1]}"
    return _summary(action, target, approved_by)


def _summary(action: PlannedAction, target: str, approved_by: list[str]) -> str:
    approved = f", approved by {' and '.join(approved_by)}" if approved_by else ""
    return f"{action.id} {_words(action.kind)}: {target or '-'}{approved}"[:SUMMARY_LIMIT]


def _label(record: ActionRecord) -> str:
    target = f" {_md(record.action.target)}" if record.action.target else ""
    return f"{record.action.id} {_words(record.action.kind)}{target}"


def _waiting(view: CaseView) -> list[str]:
    if not view.undecided:
        return ["Nothing waits for a decision."]
    approvers = " or ".join(_md(a) for a in view.policy.approvers) or "an approver"
    until = f" until {view.deadline:%Y-%m-%d %H:%M} UTC" if view.deadline else ""
    lines = []
    for record in view.undecided:
        needed = (2 if record.action.policy == "two_person" else 1) - len(record.approved_by)
        approvals = "approval" if needed == 1 else "approvals"
        lines.append(f"- **{_label(record)}** waits for {needed} {approvals} from {approvers}{until}")
    return lines


def _running(view: CaseView) -> list[str]:
    return [f"- {_label(r)}" for r in view.records if r.started_at and not r.finished_at]


def _trail(view: CaseView) -> list[str]:
    """One line per decision: when, who, approved or rejected, which action, why, under which plan."""
    if not view.trail:
        return ["No decisions yet."]
    records = {r.action.id: r for r in view.records}
    lines = []
    for entry in view.trail:
        decision = entry.decision
        record = records.get(decision.action_id)
        action = _label(record) if record else _md(decision.action_id)
        verb = "approved" if decision.approve else "rejected"
        reason = f": “{_md(decision.reason)}”" if decision.reason.strip() else ""
        key = f", key `{entry.key_id}`" if entry.key_id else ""
        lines.append(
            f"- {entry.at:%Y-%m-%d %H:%M:%S} UTC **{_md(decision.approver)}** {verb} **{action}**{reason} "
            f"(plan `{decision.plan_hash}`{key})"
        )
    return lines


def _alerts(alerts: list[str]) -> str:
    """Every alert's link, or for a storm (bounded, whatever the case absorbed) the count, the first
    and the latest."""
    if len(alerts) <= ALERTS_SHOWN:
        return "**Alerts:** " + ", ".join(alert_link(a) for a in alerts)
    latest = ", ".join(alert_link(a) for a in alerts[-(ALERTS_SHOWN - 1):])
    return f"**Alerts:** {len(alerts)}: {alert_link(alerts[0])}, …, {latest}"


def current_details(view: CaseView) -> str:
    """Markdown for the UI's "Current Details": stage, what waits for whom, the decision trail."""
    facts = [f"**Stage:** {_words(view.stage)}"]
    if view.verdict:
        facts.append(f"**Verdict:** {_words(view.verdict)}")
    if view.connector:
        facts.append(f"**Connector:** {_md(view.connector)}")
    if view.plan_hash:
        facts.append(f"**Plan:** `{view.plan_hash}`")
    sections = [
        " · ".join(facts),
        _alerts(view.alerts),
        "### Waiting for a decision\n" + "\n".join(_waiting(view)),
    ]
    if running := _running(view):
        sections.append("### Running\n" + "\n".join(running))
    sections.append("### Decisions\n" + "\n".join(_trail(view)))
    return "\n\n".join(sections)
