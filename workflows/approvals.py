"""Approval gates: pure rules the case workflow applies to decisions, and the pending view.

`validate_signed` runs in the update validator (read-only, raises to reject, so a rejected
request leaves no history); `apply` runs in the handler and records the decision. The same
`decision_problem` judges a decision in the workflow (against the trust it last fetched), in
every action activity (`authorisation_problem`, against the worker's current settings) and
offline (`report_problems`). `validate` is the rule of cases started before signed approvals
(they replay with it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from workflows import signatures
from workflows.types import (
    ActionInput,
    ActionRecord,
    ApprovalPolicy,
    CaseReport,
    ClassifyParams,
    CommentParams,
    Decision,
    DecisionReceipt,
    Finding,
    Mode,
    PendingApproval,
    Plan,
    PlannedAction,
    Trust,
    UnblockSenderParams,
    UserParams,
)

EXECUTED = ("done", "already_done")


def required_approvals(record: ActionRecord) -> int:
    return 2 if record.action.policy == "two_person" else 1


def needs_approval(record: ActionRecord, mode: Mode) -> bool:
    """Dry runs change nothing, so they ask nobody."""
    return mode == "enforce" and record.action.policy in ("approve", "two_person")


def is_approved(record: ActionRecord) -> bool:
    return len(record.approved_by) >= required_approvals(record)


def _fold(text: str) -> str:
    return text.strip().casefold()


def _same(a: str, b: str) -> bool:
    return _fold(a) == _fold(b)


def _pending_record(decision: Decision, plan: Plan | None, records: dict[str, ActionRecord]) -> ActionRecord:
    if plan is None:
        raise ValueError("the case has no plan yet")
    if decision.plan_hash != plan.hash:
        raise ValueError(f"plan {decision.plan_hash} is not the current plan {plan.hash}: re-read it")
    record = records.get(decision.action_id)
    if record is None:
        raise ValueError(f"no action {decision.action_id} in this case")
    if record.status != "awaiting_approval" or is_approved(record):
        raise ValueError(f"action {decision.action_id} is not pending (status {record.status})")
    return record


def validate(
    decision: Decision, plan: Plan | None, records: dict[str, ActionRecord], policy: ApprovalPolicy
) -> None:
    """Cases started before signed approvals: raise ValueError with the reason to refuse."""
    record = _pending_record(decision, plan, records)
    if not any(_same(decision.approver, allowed) for allowed in policy.approvers):
        raise ValueError(f"{decision.approver} is not an authorised approver")
    if any(_same(decision.approver, earlier) for earlier in record.approved_by):
        raise ValueError(f"{decision.approver} already approved {decision.action_id}: a second, distinct approver is required")
    if not decision.approve and not decision.reason.strip():
        raise ValueError("a rejection needs a reason")


def _signer(decision: Decision, trust: Trust) -> tuple[str, str | None] | None:
    """(public key, owning account) of the key that signed, or None when the key is unknown.
    The approvals API's key has no owner: it signs for the caller it authenticated."""
    for entry in trust.keys:
        if signatures.key_id(entry.public_key) == decision.key_id:
            return entry.public_key, entry.account
    if trust.api_key and signatures.key_id(trust.api_key) == decision.key_id:
        return trust.api_key, None
    return None


def decision_problem(
    decision: Decision, case_id: str, trust: Trust, now: datetime | None = None, max_age: timedelta | None = None
) -> str | None:
    """Why `decision` does not count for `case_id` under `trust`, or None when it does.

    With `now`, it must also have been signed within `max_age` (default: the approval window)
    before it and not more than the allowed skew after it.
    """
    if not any(_same(decision.approver, allowed) for allowed in trust.approvers):
        return f"{decision.approver} is not an authorised approver"
    if not decision.signed:
        if trust.allow_unsigned:
            return None
        return "unsigned decision refused: sign it with the approver's key (quell approve --key, quell sign)"
    if decision.case_id != case_id:
        return f"signed for case {decision.case_id}, not for this case"
    signer = _signer(decision, trust)
    if signer is None:
        return f"unknown key {decision.key_id or '(none)'}"
    public_key, owner = signer
    if owner is not None and not _same(owner, decision.approver):
        return f"key {decision.key_id} belongs to {owner}, not to {decision.approver}"
    if not signatures.signature_valid(decision, public_key):
        return f"bad signature (key {decision.key_id})"
    if decision.issued_at is None or not decision.nonce:
        return "a signed decision needs issued_at and a nonce"
    if now is not None:
        age = max_age or trust.window
        if decision.issued_at < now - age:
            return f"signed at {decision.issued_at.isoformat()}, longer than {age} ago: sign again"
        if decision.issued_at > now + trust.max_skew:
            return f"signed at {decision.issued_at.isoformat()}, in the future: check the signer's clock"
    return None


def case_accounts(findings: Iterable[Finding], plan: Plan) -> list[str]:
    """Accounts the case is about: the findings' account subjects (acting and suspect admins,
    compromised senders) and the users and senders its actions target (case-folded)."""
    named = {_fold(part) for f in findings for s in f.accounts() for part in (s.id, s.name) if part}
    return sorted(named | plan_accounts(plan))


def plan_accounts(plan: Plan) -> set[str]:
    """Accounts the plan's actions act on (password resets, session revocations, unblocked senders)."""
    found = set()
    for action in plan.actions:
        if isinstance(action.params, UserParams):
            found |= {_fold(action.params.user), _fold(action.target)}
        elif isinstance(action.params, UnblockSenderParams):
            found.add(_fold(action.params.sender_address))
    return found - {""}


def validate_signed(
    decision: Decision,
    case_id: str,
    plan: Plan | None,
    records: dict[str, ActionRecord],
    trust: Trust,
    now: datetime,
    nonces: set[str],
    excluded: list[str],
) -> None:
    """Raise ValueError with the reason when a decision must be refused (signed approvals)."""
    if plan is None:
        raise ValueError("the case has no plan yet")
    if problem := decision_problem(decision, case_id, trust, now):
        raise ValueError(problem)
    if decision.signed and decision.nonce in nonces:
        raise ValueError(f"nonce {decision.nonce} was used before: a signed decision counts once")
    record = _pending_record(decision, plan, records)
    if _fold(decision.approver) in excluded:
        raise ValueError(f"{decision.approver} is named by this case's findings or actions and cannot decide them")
    if any(_same(decision.approver, earlier) for earlier in record.approved_by):
        raise ValueError(f"{decision.approver} already approved {decision.action_id}: a second, distinct approver is required")
    if decision.signed and any(d.approve and d.key_id == decision.key_id for d in record.decisions):
        raise ValueError(f"key {decision.key_id} already approved {decision.action_id}: a second, distinct key is required")
    if not decision.approve and not decision.reason.strip():
        raise ValueError("a rejection needs a reason")


def withdraw_untrusted(record: ActionRecord, case_id: str, trust: Trust) -> list[str]:
    """Drop the approvals of a pending action that no longer count under `trust` (an approver or
    key removed from the worker's settings); what was dropped and why."""
    kept, withdrawn = [], []
    for d in record.decisions:
        problem = decision_problem(d, case_id, trust) if d.approve else None
        if problem is None:
            kept.append(d)
        else:
            withdrawn.append(f"{record.action.id} approval by {d.approver} withdrawn: {problem}")
    if withdrawn:
        record.decisions = kept
        record.approved_by = [d.approver.strip().lower() for d in kept if d.approve]
    return withdrawn


def _any_alert(action: PlannedAction) -> PlannedAction:
    if isinstance(action.params, ClassifyParams | CommentParams):
        return action.model_copy(update={"params": action.params.model_copy(update={"alert_id": ""})})
    return action


def in_plan(action: PlannedAction, plan: Plan) -> bool:
    """The action is one of the plan's, or an alert write-back of one for another absorbed alert."""
    return any(_any_alert(planned) == _any_alert(action) for planned in plan.actions)


def authorisation_problem(inp: ActionInput, trust: Trust, now: datetime, max_age: timedelta) -> str | None:
    """Why the worker must not run this action (None: it may). Trusts nothing in `inp` but what
    the signatures cover: the policy and the keys are the worker's own."""
    if inp.mode == "dry_run":
        return None  # a dry run only reads
    policy = trust.for_action(inp.action.kind)
    if policy == "auto":
        return None
    if policy == "never":
        return f"the worker's policy for {inp.action.kind} is 'never'"
    if inp.plan is None or not in_plan(inp.action, inp.plan):
        return f"{inp.action.id} is not part of the plan the approvals name"
    plan_hash = inp.plan.hash
    excluded = set(inp.case_accounts) | plan_accounts(inp.plan)
    approvers: set[str] = set()
    keys: set[str] = set()
    refused: list[str] = []
    for d in inp.decisions:
        problem = decision_problem(d, inp.case_id, trust, now, max_age)
        if problem is None and (d.action_id != inp.action.id or d.plan_hash != plan_hash):
            problem = f"signed for {d.action_id} of plan {d.plan_hash}"
        if problem is None and _fold(d.approver) in excluded:
            problem = "named by the case"
        if problem is not None:
            refused.append(f"{d.approver}: {problem}")
        elif not d.approve:
            return f"rejected by {d.approver}"
        else:
            approvers.add(_fold(d.approver))
            keys.add(d.key_id if d.signed else f"unsigned/{_fold(d.approver)}")
    needed = 2 if policy == "two_person" else 1
    if min(len(approvers), len(keys)) >= needed:
        return None
    why = f" (not counted: {'; '.join(refused)})" if refused else ""
    return (f"{inp.action.kind} needs {needed} valid signed approval(s) from distinct approvers and keys "
            f"under the worker's settings, has {min(len(approvers), len(keys))}{why}")


def report_problems(report: CaseReport, trust: Trust) -> list[str]:
    """Offline: every recorded decision that does not verify against `trust`, and a plan that
    does not hash to what the decisions name (the time bounds are not re-checked)."""
    problems = []
    if report.actions and Plan(actions=[r.action for r in report.actions]).hash != report.plan_hash:
        problems.append(f"the report's actions do not hash to its plan {report.plan_hash}")
    for record in report.actions:
        for d in record.decisions:
            what = f"{record.action.id} {'approval' if d.approve else 'rejection'} by {d.approver} (key {d.key_id or '-'})"
            if d.action_id != record.action.id or d.plan_hash != report.plan_hash:
                problems.append(f"{what}: signed for {d.action_id} of plan {d.plan_hash}")
            elif problem := decision_problem(d, report.case_id, trust):
                problems.append(f"{what}: {problem}")
    return problems


def apply(record: ActionRecord, decision: Decision, now: datetime) -> None:
    record.decisions.append(decision)
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
