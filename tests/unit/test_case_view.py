"""What the Temporal UI shows of a case: static summary and details, current details, activity summaries."""

from datetime import datetime, timezone

from workflows.case_view import (
    CaseView,
    DecisionEntry,
    action_summary,
    current_details,
    static_details,
    static_summary,
)
from workflows.types import (
    ActionRecord,
    AlertRef,
    AnalyzedMessage,
    ApprovalPolicy,
    CaseInput,
    ClassifyParams,
    Decision,
    PlannedAction,
    UnblockConnectorParams,
)

AT = datetime(2026, 11, 20, 10, 5, 7, tzinfo=timezone.utc)
POLICY = ApprovalPolicy(approvers=["soc1@contoso.com", "soc2@contoso.com"])


def _case(connector_hint: str | None = "Contoso Hybrid") -> CaseInput:
    alert = AlertRef(
        alert_id="da63/7f?1", tenant_id="contoso-tenant", severity="high", created=AT, connector_hint=connector_hint,
        ip_addresses=["198.51.100.23"],
        messages=[AnalyzedMessage(network_message_id="spam-0", p2_sender="billing@contoso.com",
                                  recipient="victim0@target0.example")],
    )
    return CaseInput(tenant_id="contoso-tenant", alert=alert, policy=POLICY)


def _unblock(action_id: str = "a2", policy: str = "approve") -> ActionRecord:
    action = PlannedAction(
        id=action_id, kind="unblock_connector", target="Contoso | Hybrid", stage="recover", reason="r",
        policy=policy, params=UnblockConnectorParams(connector_id="9b0e4c50"),
    )
    return ActionRecord(action=action, status="awaiting_approval")


def _view(**changes) -> CaseView:
    record = _unblock()
    values = dict(stage="awaiting_approval", verdict="true_positive", connector="Contoso | Hybrid",
                  alerts=["da63/7f?1"], records=[record], undecided=[record], trail=[], policy=POLICY,
                  deadline=AT, plan_hash="3f2a9c01beef")
    return CaseView(**(values | changes))


def test_the_static_summary_and_details_name_ids_and_link_the_alert_in_defender():
    case = _case()
    assert static_summary(case) == "Suspicious connector activity: connector Contoso Hybrid, tenant contoso-tenant"
    assert "alert da63/7f?1" in static_summary(_case(connector_hint=None))
    details = static_details(case)
    assert "[da63/7f?1](https://security.microsoft.com/alerts/da63%2F7f%3F1)" in details
    assert "`contoso-tenant`" in details and "Contoso Hybrid" in details and "high" in details
    for personal in ("billing@contoso.com", "victim0@target0.example", "spam-0", "soc1@contoso.com"):
        assert personal not in details + static_summary(case)


def test_current_details_say_what_waits_for_whom_until_when():
    details = current_details(_view())
    assert "**Stage:** awaiting approval" in details and "**Verdict:** true positive" in details
    assert "**Plan:** `3f2a9c01beef`" in details
    assert ("**a2 unblock connector Contoso \\| Hybrid** waits for 1 approval from "
            "soc1@contoso.com or soc2@contoso.com until 2026-11-20 10:05 UTC") in details
    assert "No decisions yet." in details
    assert "Nothing waits for a decision." in current_details(_view(undecided=[]))


def test_every_decision_is_a_line_with_approver_decision_reason_and_plan_hash():
    record = _unblock()
    trail = [
        DecisionEntry(AT, Decision(action_id="a2", approver="soc1@contoso.com", plan_hash="3f2a9c01beef")),
        DecisionEntry(AT, Decision(action_id="a2", approver="soc2@contoso.com", plan_hash="3f2a9c01beef",
                                   approve=False, reason="IAM owns *this*")),
    ]
    details = current_details(_view(records=[record], undecided=[], trail=trail))
    assert ("- 2026-11-20 10:05:07 UTC **soc1@contoso.com** approved **a2 unblock connector Contoso \\| Hybrid** "
            "(plan `3f2a9c01beef`)\n") in details
    assert ("**soc2@contoso.com** rejected **a2 unblock connector Contoso \\| Hybrid**: “IAM owns \\*this\\*” "
            "(plan `3f2a9c01beef`)") in details
    assert "key" not in details


def test_a_signing_key_is_named_once_approvals_carry_one():
    decision = Decision(action_id="a2", approver="soc1@contoso.com", plan_hash="h")
    trail = [DecisionEntry(AT, decision, key_id="soc1-2026")]
    assert "(plan `h`, key `soc1-2026`)" in current_details(_view(trail=trail))


def test_activity_summaries_name_the_action_its_target_and_approvers():
    record = _unblock()
    assert action_summary(record.action, ["soc1@contoso.com", "soc2@contoso.com"]) == (
        "a2 unblock connector: Contoso | Hybrid, approved by soc1@contoso.com and soc2@contoso.com")
    classify = PlannedAction(
        id="a8", kind="classify_alert", stage="report", reason="r", policy="auto",
        params=ClassifyParams(alert_id="da63", status="resolved"),
    )
    assert action_summary(classify, []) == "a8 classify alert: alert da63"
    assert len(action_summary(record.action, ["x" * 300])) == 200
