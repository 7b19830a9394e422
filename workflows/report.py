"""The final case report as Markdown: what the analyst and the audit trail read after the case.

Pure: the workflow (or the CLI, from the `report` query) renders a `CaseReport`; nothing here
reads the clock or the tenant. It shows the verdict and the findings with their evidence, the
plan, every action with its status, approvers, timestamps and verification, each decision with
its key id, nonce, issue time and signature (what `quell report --verify` checks), and, when the
case needs manual work, what was and was not done.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from workflows.types import ActionRecord, CaseReport, Decision, Finding

EXECUTED = ("done", "already_done")
FOOTPRINTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Other connectors", ("other_connector_suspicious",),
     "Connectors besides the alerted one, created or changed without approval by an account that is not a "
     "connector admin or is suspect."),
    ("Deleted connectors", ("connector_deleted",),
     "Connectors deleted without approval. Nothing is planned for them: recreate one from its last known "
     "properties if it was legitimate."),
    ("What the admin also did", ("admin_transport_rule_change", "admin_mail_forwarding", "admin_mailbox_permission",
                                 "admin_role_granted", "admin_accepted_domain_added"),
     "The suspect admins' other operations in the lookback (Responding to a Compromised Email Account). "
     "An added accepted domain is reported only: removing one can break mail flow."),
)
"""The whole playbook's sections: title, the findings they show, what they are."""
ACTED_ON_BY = {
    "other_connector_suspicious": ("disable_connector", "revert_connector_change"),
    "admin_transport_rule_change": ("disable_transport_rule",),
    "admin_mail_forwarding": ("remove_mail_forwarding",),
    "admin_mailbox_permission": ("remove_mailbox_permission",),
    "admin_role_granted": ("remove_role_assignment",),
}
"""The action kinds that answer each footprint finding (deleted connectors and domains: none)."""
STATUS_WORDS = {
    "done": "done",
    "already_done": "already done",
    "failed": "failed",
    "rejected": "rejected",
    "expired": "approval expired",
    "skipped": "skipped",
    "planned": "not run",
    "awaiting_approval": "still awaiting approval",
    "dry_run": "dry run only",
}


def report_markdown(report: CaseReport) -> str:
    sections = [
        _header(report),
        _verdict(report),
        _findings(report),
        *(_footprint(report, *section) for section in FOOTPRINTS),
        _actions(report),
        _outcome(report),
        _notes(report),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header(report: CaseReport) -> str:
    connector = report.connector or "unresolved"
    if report.connector_config is not None:
        config = report.connector_config
        state = "enabled" if config.enabled else "disabled"
        connector = f"{config.name} ({config.direction}, {config.guid}, {state} when read)"
    rows = [
        ("Tenant", report.tenant_id),
        ("Alerts", ", ".join(report.alerts)),
        ("Connector", connector),
        ("Verdict", f"**{report.verdict}**"),
        ("Case status", f"**{report.case_status}**"),
        ("Mode", "dry run: nothing in the tenant or the alert was changed" if report.mode == "dry_run"
         else "enforce"),
        ("Plan", report.plan_hash or "none"),
        ("Started", _time(report.started_at)),
        ("Finished", _time(report.finished_at)),
    ]
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    return f"# quell case {report.case_id}\n\n| | |\n|---|---|\n{table}"


def _verdict(report: CaseReport) -> str:
    reasons = "\n".join(f"- {r}" for r in report.reasons) or "- (no reasons recorded)"
    return f"## Verdict: {report.verdict}\n\n{reasons}"


def _findings(report: CaseReport) -> str:
    if not report.findings:
        return "## Findings\n\nNone."
    parts = ["## Findings"]
    for finding in report.findings:
        lines = [f"### {finding.id}", "", finding.summary]
        if finding.evidence:
            lines += ["", *(f"- `{key}`: {_value(value)}" for key, value in finding.evidence.items())]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _footprint(report: CaseReport, title: str, finding_ids: tuple[str, ...], what: str) -> str:
    """One finding per line, its evidence, and what the case did about the thing it names."""
    found = [f for f in report.findings if f.id in finding_ids]
    if not found:
        return ""
    lines = [f"## {title}", "", what, ""]
    for finding in found:
        lines.append(f"- **{finding.id}**: {_inline(finding.summary)}")
        lines += [f"  - `{key}`: {_value(value)}" for key, value in finding.evidence.items()
                  if key in ("connector", "last_known", "mailbox", "rule", "grantee", "access_rights", "role",
                             "domain", "forwarding")]
        done = _acted_on(report, finding)
        lines += [f"  - {r.action.id} {r.action.kind} {r.action.target}: {STATUS_WORDS.get(r.status, r.status)}"
                  + (f" ({_inline(r.detail)})" if r.detail else "") for r in done]
        if not done:
            lines.append("  - nothing was done about it by the case")
    return "\n".join(lines)


def _acted_on(report: CaseReport, finding: Finding) -> list[ActionRecord]:
    """The actions of the kinds that answer this finding on something it names."""
    named = {(s.name or "").casefold() for s in finding.subjects if s.kind != "account"} - {""}
    kinds = ACTED_ON_BY.get(finding.id, ())
    return [r for r in report.actions if r.action.kind in kinds and r.action.target.casefold() in named]


def _actions(report: CaseReport) -> str:
    if not report.actions:
        return "## Plan and actions\n\nNo actions were planned."
    header = (
        "| id | action | target | stage | policy | requires | status | approved by | verified | started | finished |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        "| " + " | ".join(_cell(v) for v in (
            r.action.id, r.action.kind, r.action.target or "-", r.action.stage, r.action.policy,
            ", ".join(r.action.requires) or "-", r.status, ", ".join(r.approved_by) or "-",
            _verified(r.verified), _time(r.started_at), _time(r.finished_at),
        )) + " |"
        for r in report.actions
    ]
    details = "\n".join(_action_detail(r) for r in report.actions)
    return f"## Plan and actions\n\n{header}\n" + "\n".join(rows) + f"\n\n{details}"


def _action_detail(record: ActionRecord) -> str:
    action = record.action
    lines = [f"- **{action.id} {action.kind}** {action.target}".rstrip(), f"  - why: {_inline(action.reason)}"]
    if record.rejected_by:
        lines.append(f"  - rejected by {record.rejected_by} at {_time(record.decided_at)}: {_inline(record.decision_reason)}")
    elif record.approved_by:
        said = f": {_inline(record.decision_reason)}" if record.decision_reason else ""
        lines.append(f"  - approved by {', '.join(record.approved_by)} at {_time(record.decided_at)}{said}")
    lines += [f"  - {_decision(d)}" for d in record.decisions]
    if record.detail:
        lines.append(f"  - result: {_inline(record.detail)}")
    return "\n".join(lines)


def _decision(d: Decision) -> str:
    answer = "approval" if d.approve else "rejection"
    if not d.signed:
        return f"{answer} by {d.approver}: unsigned"
    return (f"{answer} by {d.approver}: key {d.key_id}, issued {_time(d.issued_at)}, nonce {d.nonce}, "
            f"signature `{d.signature}`")


def _outcome(report: CaseReport) -> str:
    if not report.actions:
        return ""
    done = [r for r in report.actions if r.status in EXECUTED]
    not_done = [r for r in report.actions if r.status not in EXECUTED]
    lines = ["## What was and was not done", ""]
    if report.case_status == "needs_manual":
        lines += ["**Needs manual work:** an action failed or could not be verified. Finish the steps "
                  "below by hand, in plan order, before unblocking anything.", ""]
    lines.append("Done:")
    lines += [f"- {r.action.id} {r.action.kind} {r.action.target}".rstrip()
              + (" (already in the target state)" if r.status == "already_done" else "")
              for r in done] or ["- nothing"]
    lines += ["", "Not done:"]
    lines += [f"- {r.action.id} {r.action.kind} {r.action.target}".rstrip()
              + f": {STATUS_WORDS.get(r.status, r.status)}"
              + (f" ({_inline(r.detail)})" if r.detail else "")
              for r in not_done] or ["- nothing"]
    return "\n".join(lines)


def _notes(report: CaseReport) -> str:
    notes = {k: v for k, v in report.notes.items() if v not in (None, [], {}, "")}
    if not notes:
        return ""
    return "## Notes\n\n" + "\n".join(f"- {key}: {_value(value)}" for key, value in notes.items())


def _verified(verified: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[verified]


def _time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _inline(value)
    return f"`{json.dumps(value, default=str, sort_keys=True)}`"


def _inline(text: str) -> str:
    return " ".join(text.split())


def _cell(value: str) -> str:
    return _inline(value).replace("|", "\\|")
