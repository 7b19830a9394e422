"""Signed decisions: what a signature binds, and every reason one does not count."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.settings import ApprovalSettings
from workflows import approvals, signatures
from workflows.types import (
    ActionInput,
    ActionRecord,
    ApproverKey,
    ConnectorParams,
    Decision,
    Finding,
    Plan,
    PlannedAction,
    Subject,
    UserParams,
)

NOW = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
CASE = "connector-case/t1/connector/x"
SOC1, SOC1_LAPTOP, SOC2, API, MALLORY = (Ed25519PrivateKey.generate() for _ in range(5))


def entry(account: str, key: Ed25519PrivateKey) -> ApproverKey:
    return ApproverKey(account=account, public_key=signatures.public_key_text(key.public_key()))


SETTINGS = ApprovalSettings(
    approvers=[entry("soc1@contoso.com", SOC1), entry("soc1@contoso.com", SOC1_LAPTOP),
               entry("soc2@contoso.com", SOC2), entry("helpdesk.op@contoso.com", Ed25519PrivateKey.generate())],
    api_public_key=signatures.public_key_text(API.public_key()),
)
TRUST = SETTINGS.trust()


def _plan() -> Plan:
    return Plan(actions=[
        PlannedAction(id="a1", kind="disable_connector", target="X", stage="contain", reason="r", policy="approve",
                      params=ConnectorParams(kind="disable_connector", identity="9b0e", direction="inbound")),
        PlannedAction(id="a2", kind="remove_connector", target="X", stage="contain", reason="r", policy="two_person",
                      params=ConnectorParams(kind="remove_connector", identity="9b0e", direction="inbound")),
        PlannedAction(id="a3", kind="reset_admin_password", target="helpdesk.op@contoso.com", stage="eradicate",
                      reason="r", policy="approve", params=UserParams(kind="reset_admin_password", user="2a7d")),
    ])


PLAN = _plan()
SUSPECT = Finding(id="admin_bruteforce_success", summary="s",
                  subjects=[Subject(kind="account", id="2a7d", name="helpdesk.op@contoso.com")])


def signed(key=SOC1, action="a1", who="soc1@contoso.com", case=CASE, plan_hash=None, approve=True, reason="",
           issued=NOW, nonce="n-1") -> Decision:
    unsigned = Decision(case_id=case, action_id=action, approver=who, plan_hash=plan_hash or PLAN.hash,
                        approve=approve, reason=reason, issued_at=issued, nonce=nonce)
    return signatures.sign(unsigned, key)


def records() -> dict[str, ActionRecord]:
    return {a.id: ActionRecord(action=a, status="awaiting_approval") for a in PLAN.actions}


def validate(decision: Decision, recs=None, nonces=frozenset(), now=NOW) -> None:
    approvals.validate_signed(decision, CASE, PLAN, recs or records(), TRUST, now, set(nonces),
                              approvals.case_accounts([SUSPECT], PLAN))


def test_a_signed_approval_counts_and_binds_every_field():
    d = signed()
    validate(d)
    assert approvals.decision_problem(d, CASE, TRUST, NOW) is None
    for change in ({"approve": False}, {"reason": "x"}, {"action_id": "a2"}, {"approver": "soc2@contoso.com"},
                   {"nonce": "n-2"}, {"issued_at": NOW - timedelta(seconds=1)}, {"plan_hash": "000000000000"}):
        assert not signatures.signature_valid(d.model_copy(update=change), signatures.public_key_text(SOC1.public_key()))


def test_the_canonical_form_survives_json_and_names_its_version():
    d = signed()
    again = Decision.model_validate_json(d.model_dump_json())
    assert signatures.signed_bytes(again) == signatures.signed_bytes(d)
    assert signatures.signed_bytes(d).startswith(b"quell-decision-v1\n{")


@pytest.mark.parametrize(("decision", "reason"), [
    (Decision(action_id="a1", approver="soc1@contoso.com", plan_hash=PLAN.hash), "unsigned decision refused"),
    (signed(key=MALLORY), "unknown key"),
    (signed(key=MALLORY, who="mallory@contoso.com"), "not an authorised approver"),
    (signed(key=SOC2), "belongs to soc2@contoso.com"),
    (signed(case="connector-case/t1/connector/other"), "signed for case connector-case/t1/connector/other"),
    (signed(issued=NOW - timedelta(minutes=16)), "longer than 0:15:00 ago"),
    (signed(issued=NOW + timedelta(minutes=5)), "in the future"),
    (signed().model_copy(update={"signature": signed(reason="other").signature}), "bad signature"),
])
def test_refused(decision, reason):
    with pytest.raises(ValueError, match=reason):
        validate(decision)


def test_a_reused_nonce_is_refused():
    with pytest.raises(ValueError, match="nonce n-1 was used before"):
        validate(signed(), nonces={"n-1"})


def test_accounts_the_case_names_cannot_decide_its_actions():
    assert approvals.case_accounts([SUSPECT], PLAN) == ["2a7d", "helpdesk.op@contoso.com"]
    # The suspect admin is a configured approver; neither an approval nor a rejection counts.
    for decision in (signed(key=API, who="helpdesk.op@contoso.com"),
                     signed(key=API, who="helpdesk.op@contoso.com", approve=False, reason="no")):
        with pytest.raises(ValueError, match="named by this case"):
            validate(decision)


def test_two_person_needs_two_approvers_and_two_keys():
    recs = records()
    first = signed(action="a2", nonce="n-1")
    validate(first, recs)
    approvals.apply(recs["a2"], first, NOW)
    with pytest.raises(ValueError, match="a second, distinct approver"):  # same key twice
        validate(signed(action="a2", nonce="n-2"), recs)
    with pytest.raises(ValueError, match="a second, distinct approver"):  # same person, second key
        validate(signed(key=SOC1_LAPTOP, action="a2", nonce="n-3"), recs)
    api_first = records()
    by_api = signed(key=API, action="a2", who="soc2@contoso.com", nonce="n-4")
    validate(by_api, api_first)
    approvals.apply(api_first["a2"], by_api, NOW)
    with pytest.raises(ValueError, match="a second, distinct key"):  # the API alone cannot be two people
        validate(signed(key=API, action="a2", nonce="n-5"), api_first)
    second = signed(key=SOC2, action="a2", who="soc2@contoso.com", nonce="n-6")
    validate(second, recs)
    approvals.apply(recs["a2"], second, NOW)
    assert approvals.is_approved(recs["a2"])


def test_unsigned_decisions_count_only_where_allowed():
    legacy = ApprovalSettings(approvers=["soc1@contoso.com"], allow_unsigned=True).trust()
    d = Decision(action_id="a1", approver="soc1@contoso.com", plan_hash=PLAN.hash)
    assert approvals.decision_problem(d, CASE, legacy, NOW) is None
    with pytest.raises(ValueError, match="has no public key"):
        ApprovalSettings(approvers=["soc1@contoso.com"])


def test_a_removed_approvers_approval_is_withdrawn():
    recs = records()
    approvals.apply(recs["a1"], signed(), NOW)
    without_soc1 = SETTINGS.model_copy(update={"approvers": [e for e in SETTINGS.approvers
                                                             if e.account != "soc1@contoso.com"]}).trust()
    assert approvals.withdraw_untrusted(recs["a1"], CASE, TRUST) == []
    withdrawn = approvals.withdraw_untrusted(recs["a1"], CASE, without_soc1)
    assert withdrawn == ["a1 approval by soc1@contoso.com withdrawn: soc1@contoso.com is not an authorised approver"]
    assert recs["a1"].approved_by == [] and not approvals.is_approved(recs["a1"])


def gate(action_id: str, decisions: list[Decision], plan: Plan = PLAN, trust=TRUST, accounts=()) -> str | None:
    action = next(a for a in plan.actions if a.id == action_id)
    inp = ActionInput(tenant_id="t1", case_id=CASE, action=action, plan=plan, decisions=decisions,
                      case_accounts=list(accounts))
    return approvals.authorisation_problem(inp, trust, NOW, timedelta(hours=9))


def test_the_activity_gate_counts_only_valid_signatures_under_its_own_policy():
    assert gate("a1", [signed()]) is None
    assert "has 0" in gate("a1", [])
    assert "unknown key" in gate("a1", [signed(key=MALLORY)])
    assert "has 1" in gate("a2", [signed(action="a2")])
    assert "has 1" in gate("a2", [signed(action="a2"), signed(key=SOC1_LAPTOP, action="a2", nonce="n-2")])
    assert "has 1" in gate("a2", [signed(key=API, action="a2"), signed(key=API, action="a2", who="soc2@contoso.com")])
    assert gate("a2", [signed(action="a2"), signed(key=SOC2, action="a2", who="soc2@contoso.com")]) is None
    assert gate("a2", [signed(action="a2"), signed(key=SOC2, action="a2", who="soc2@contoso.com", approve=False,
                                                   reason="veto")]) == "rejected by soc2@contoso.com"
    assert "signed for a1" in gate("a2", [signed(), signed(key=SOC2, who="soc2@contoso.com")])
    assert "named by the case" in gate("a3", [signed(key=API, action="a3", who="helpdesk.op@contoso.com")])


def test_the_gate_ignores_the_policy_a_crafted_plan_carries():
    crafted = Plan(actions=[a.model_copy(update={"policy": "auto"}) for a in PLAN.actions])
    assert "has 0" in gate("a1", [], plan=crafted)
    stranger = PLAN.actions[0].model_copy(update={"target": "Other"})
    inp = ActionInput(tenant_id="t1", case_id=CASE, action=stranger, plan=PLAN, decisions=[signed()])
    assert "not part of the plan" in approvals.authorisation_problem(inp, TRUST, NOW, timedelta(hours=9))
    auto = SETTINGS.model_copy(update={"by_action": {"disable_connector": "auto"}}).trust()
    assert gate("a1", [], trust=auto) is None
    assert gate("a1", [signed(issued=NOW - timedelta(hours=10))]).startswith("disable_connector needs 1")
