"""Approval gates: pure rules the case workflow applies to decisions, and the pending view.

`validate` runs in the update validator (read-only, raises to reject, so a rejected request
leaves no history); `apply` runs in the handler and records the decision.
"""

from __future__ import annotations

from datetime import datetime

from workflows.types import (
    ActionRecord,
    ApprovalPolicy,
    Decision,
    DecisionReceipt,
    Mode,
    PendingApproval,
    Plan,
)

EXECUTED = ("done", "already_done")


def required_approvals(record: ActionRecord) -> int:
    return 2 if record.action.policy == "two_person" else 1


def needs_approval(record: ActionRecord, mode: Mode) -> bool:
    """Dry runs change nothing, so they ask nobody."""
    return mode == "enforce" and record.action.policy in ("approve", "two_person")


def is_approved(record: ActionRecord) -> bool:
    return len(record.approved_by) >= required_approvals(record)


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def validate(
    decision: Decision, plan: Plan | None, records: dict[str, ActionRecord], policy: ApprovalPolicy
) -> None:
    """Raise ValueError with the reason when a decision must be refused."""
    if plan is None:
        raise ValueError("the case has no plan yet")
    if decision.plan_hash != plan.hash:
        raise ValueError(f"plan {decision.plan_hash} is not the current plan {plan.hash}: re-read it")
    record = records.get(decision.action_id)
    if record is None:
        raise ValueError(f"no action {decision.action_id} in this case")
    if record.status != "awaiting_approval" or is_approved(record):
        raise ValueError(f"action {decision.action_id} is not pending (status {record.status})")
    if not any(_same(decision.approver, allowed) for allowed in policy.approvers):
        raise ValueError(f"{decision.approver} is not an authorised approver")
    if any(_same(decision.approver, earlier) for earlier in record.approved_by):
        raise ValueError(f"{decision.approver} already approved {decision.action_id}: a second, distinct approver is required")
    if not decision.approve and not decision.reason.strip():
        raise ValueError("a rejection needs a reason")


def apply(record: ActionRecord, decision: Decision, now: datetime) -> None:
    if decision.approve:
        record.approved_by.append(decision.approver.strip().lower())
        if decision.reason:
            record.decision_reason = decision.reason
    else:
        record.status = "rejected"
        record.rejected_by = decision.approver.strip().lower()
        record.decision_reason = decision.reason
    record.decided_at = now


def receipt(record: ActionRecord, decision: Decision) -> DecisionReceipt:
    return DecisionReceipt(
        action_id=record.action.id,
        approver=decision.approver,
        plan_hash=decision.plan_hash,
        status=record.status,
        approvals=list(record.approved_by),
        still_needed=max(0, required_approvals(record) - len(record.approved_by))
        if record.status == "awaiting_approval"
        else 0,
    )


def skip(record: ActionRecord, why: str, now: datetime) -> None:
    record.status = "skipped"
    record.detail = why
    record.finished_at = now


def unmet_requirements(record: ActionRecord, records: dict[str, ActionRecord]) -> list[str]:
    """Required actions that have not been executed and verified (e.g. containment before unblock)."""
    unmet = []
    for required in record.action.requires:
        other = records.get(required)
        if other is not None and other.status == "dry_run":
            continue  # a dry run reports the whole plan as it would run
        if other is None or other.status not in EXECUTED or other.verified is False:
            unmet.append(required)
    return unmet


def pending(
    case_id: str,
    plan: Plan,
    records: dict[str, ActionRecord],
    policy: ApprovalPolicy,
    deadline: datetime | None,
) -> list[PendingApproval]:
    return [
        PendingApproval(
            case_id=case_id,
            action_id=r.action.id,
            kind=r.action.kind,
            target=r.action.target,
            reason=r.action.reason,
            policy=r.action.policy,
            plan_hash=plan.hash,
            approvals=list(r.approved_by),
            still_needed=required_approvals(r) - len(r.approved_by),
            expires_at=deadline,
        )
        for r in records.values()
        if r.status == "awaiting_approval" and not is_approved(r)
    ]
