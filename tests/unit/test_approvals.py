"""Approval rules: who may approve what, bound to the plan they saw (`validate` is the rule of
cases started before signed approvals, which replay with it; tests/unit/test_signed_decisions.py
covers the signed rules)."""

from datetime import datetime, timezone

import pytest

from workflows import approvals
from workflows.types import ActionRecord, ApprovalPolicy, ConnectorParams, Decision, Plan, PlannedAction

NOW = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
POLICY = ApprovalPolicy(approvers=["soc1@contoso.com", "SOC2@contoso.com"])


def _plan() -> tuple[Plan, dict[str, ActionRecord]]:
    plan = Plan(
        actions=[
            PlannedAction(id="a1", kind="disable_connector", target="X", stage="contain", reason="r", policy="approve",
                          params=ConnectorParams(kind="disable_connector", identity="9b0e", direction="inbound")),
            PlannedAction(id="a2", kind="remove_connector", target="X", stage="contain", reason="r",
                          policy="two_person", requires=["a1"],
                          params=ConnectorParams(kind="remove_connector", identity="9b0e", direction="inbound")),
        ]
    )
    records = {a.id: ActionRecord(action=a, status="awaiting_approval") for a in plan.actions}
    return plan, records


def decision(action="a1", who="soc1@contoso.com", plan_hash=None, approve=True, reason=""):
    return Decision(action_id=action, approver=who, plan_hash=plan_hash or _plan()[0].hash,
                    approve=approve, reason=reason)


def test_authorised_approval_is_recorded_case_insensitively():
    plan, records = _plan()
    approvals.validate(decision(who="Soc2@Contoso.com"), plan, records, POLICY)
    approvals.apply(records["a1"], decision(who="Soc2@Contoso.com"), NOW)
    assert approvals.is_approved(records["a1"])
    assert records["a1"].approved_by == ["soc2@contoso.com"]


@pytest.mark.parametrize(
    ("d", "reason"),
    [
        (decision(who="mallory@contoso.com"), "not an authorised approver"),
        (decision(plan_hash="0000deadbeef"), "not the current plan"),
        (decision(action="a9"), "no action a9"),
        (decision(approve=False), "needs a reason"),
    ],
)
def test_invalid_decisions_are_refused(d, reason):
    plan, records = _plan()
    with pytest.raises(ValueError, match=reason):
        approvals.validate(d, plan, records, POLICY)


def test_two_person_rule_needs_two_distinct_approvers():
    plan, records = _plan()
    first = decision(action="a2")
    approvals.apply(records["a2"], first, NOW)
    assert not approvals.is_approved(records["a2"])
    with pytest.raises(ValueError, match="second, distinct approver"):
        approvals.validate(decision(action="a2", who="SOC1@contoso.com"), plan, records, POLICY)
    approvals.validate(decision(action="a2", who="soc2@contoso.com"), plan, records, POLICY)
    approvals.apply(records["a2"], decision(action="a2", who="soc2@contoso.com"), NOW)
    assert approvals.is_approved(records["a2"])


def test_an_action_no_longer_pending_cannot_be_decided():
    plan, records = _plan()
    approvals.apply(records["a1"], decision(approve=False, reason="legit connector"), NOW)
    assert records["a1"].status == "rejected"
    with pytest.raises(ValueError, match="not pending"):
        approvals.validate(decision(who="soc2@contoso.com"), plan, records, POLICY)


def test_unmet_requirements_block_dependent_actions():
    _, records = _plan()
    assert approvals.unmet_requirements(records["a2"], records) == ["a1"]
    records["a1"].status, records["a1"].verified = "done", True
    assert approvals.unmet_requirements(records["a2"], records) == []
    records["a1"].verified = False
    assert approvals.unmet_requirements(records["a2"], records) == ["a1"]


def test_pending_lists_only_undecided_actions_with_the_plan_hash():
    plan, records = _plan()
    approvals.apply(records["a1"], decision(), NOW)
    listed = approvals.pending("case-1", plan, records, POLICY, NOW)
    assert [p.action_id for p in listed] == ["a2"]
    assert listed[0].plan_hash == plan.hash and listed[0].still_needed == 2


def test_a_dry_run_requirement_counts_as_met_so_the_whole_plan_is_reported():
    _, records = _plan()
    records["a1"].status, records["a1"].verified = "dry_run", False
    assert approvals.unmet_requirements(records["a2"], records) == []
