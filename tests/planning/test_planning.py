"""The planner against docs/scenarios.md "What each verdict plans", starting from the example scenario."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import yaml

from workflows.changes import review
from workflows.grading import acting_suspects
from workflows.sweep import Directory
from workflows.planning import plan
from workflows.types import (
    AdminSignIns,
    AlertRef,
    ApprovalPolicy,
    CaseInput,
    ClassifyParams,
    ConnectorChange,
    ConnectorConfig,
    ConnectorParams,
    Evidence,
    Finding,
    MailStats,
    MfaParams,
    Organization,
    Plan,
    RevertParams,
    Subject,
    UnblockConnectorParams,
    UnblockSenderParams,
    UserParams,
    Verdict,
)
from tests.conftest import PROJECT_SCENARIOS

SCENARIO = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
GUID = "9b0e4c50-0000-4000-8000-000000000010"
HELPDESK = "helpdesk.op@contoso.com"
HELPDESK_ID = "2a7d5b20-0000-4000-8000-000000000002"
STAGE_RANK = {"contain": 1, "eradicate": 2, "recover": 3, "harden": 4}

TP_FINDINGS = [
    "connector_modified", "change_by_unexpected_actor", "sender_ip_not_on_premises",
    "p1_p2_mismatch", "empty_sender_object_id", "volume_spike", "external_spray", "connector_blocked",
]


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    return yaml.safe_load(SCENARIO.read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def audit_change(record: dict[str, Any]) -> ConnectorChange:
    data = record["AuditData"]
    return ConnectorChange(
        at=at(record["CreationDate"]) if isinstance(record["CreationDate"], str) else record["CreationDate"],
        operation=record["Operation"],
        actor=record["UserIds"],
        client_ip=data.get("ClientIP"),
        parameters={p["Name"]: p["Value"] for p in data.get("Parameters", [])},
    )


def change(when: str, actor: str, operation: str = "Set-InboundConnector", **parameters: Any) -> ConnectorChange:
    return ConnectorChange(at=at(when), operation=operation, actor=actor,
                           parameters={"Identity": "Contoso Hybrid", **parameters})


def case_for(scenario: dict[str, Any], **changes: Any) -> CaseInput:
    fields: dict[str, Any] = dict(
        tenant_id=scenario["tenant"]["id"],
        alert=AlertRef(alert_id=scenario["alert"]["id"], tenant_id=scenario["tenant"]["id"]),
        organization=Organization.model_validate(scenario["organization"]),
        policy=ApprovalPolicy(approvers=scenario["approvals"]["approvers"]),
    )
    return CaseInput(**{**fields, **changes})


def evidence_for(scenario: dict[str, Any], **changes: Any) -> Evidence:
    connector = scenario["tenant"]["inbound_connectors"][0]
    fields: dict[str, Any] = dict(
        connector=ConnectorConfig(
            guid=connector["Guid"], name=connector["Name"], direction="inbound", enabled=True,
            connector_type=connector["ConnectorType"],
            properties={"SenderIPAddresses": connector["SenderIPAddresses"], "SenderDomains": ["smtp:*;1"],
                        "RestrictDomainsToIPAddresses": False},
        ),
        changes=[audit_change(r) for r in scenario["audit_log"]],
        mail=MailStats(messages=1395, spoofed_header_senders=["billing@contoso.com"]),
        accepted_domains=scenario["tenant"]["accepted_domains"],
        blocked_connector=True,
        blocked_senders=[s["SenderAddress"] for s in scenario["tenant"]["blocked_senders"]],
        admins=[AdminSignIns(upn=HELPDESK, object_id=HELPDESK_ID)],
        collected_at=at(scenario["now"]),
    )
    fields.update(changes)
    return Evidence(**fields)


def verdict(kind: str, finding_ids: list[str], **subjects: list[Subject]) -> Verdict:
    """Findings that say nothing in their summary and evidence: only their typed subjects count."""
    return Verdict(
        kind=kind,  # type: ignore[arg-type]
        findings=[Finding(id=f, summary=f"{f} observed", subjects=subjects.get(f, [])) for f in finding_ids],  # type: ignore[arg-type]
        reasons=[f"{kind} because of {', '.join(finding_ids) or 'nothing'}"],
    )


def plan_for(case: CaseInput, graded: Verdict, evidence: Evidence | None) -> Plan:
    """The plan for a verdict that carries grading's reading of the evidence's audit log."""
    if evidence is not None:
        since = evidence.collected_at - case.thresholds.lookback
        history = review(evidence.changes, evidence.connector, case.organization, since, evidence.collected_at)
        suspects = acting_suspects(history, graded.findings, evidence.admins, Directory.of(evidence.sweep))
        graded = graded.model_copy(update={"history": history, "suspects": suspects})
    return plan(case, graded, evidence)


def kinds(p: Plan) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in p.actions]


def by_kind(p: Plan, kind: str) -> list:
    return [a for a in p.actions if a.kind == kind]


# --------------------------------------------------------------------------- true positive


def test_hijacked_legitimate_connector_is_reverted_to_the_prior_audited_value(scenario):
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence_for(scenario))

    assert kinds(result) == [
        ("comment_alert", ""),
        ("revert_connector_change", "Contoso Hybrid"),
        ("reset_admin_password", HELPDESK),
        ("revoke_sessions", HELPDESK),
        ("unblock_connector", "Contoso Hybrid"),
        ("unblock_sender", "billing@contoso.com"),
        ("require_admin_mfa", ""),
        ("classify_alert", ""),
    ]
    revert = by_kind(result, "revert_connector_change")[0]
    assert revert.params == RevertParams(identity=GUID, direction="inbound", restore={"SenderIPAddresses": ["203.0.113.5"]})
    assert "exadmin@contoso.com" in revert.reason and "helpdesk.op@contoso.com" in revert.reason
    assert "change_by_unexpected_actor" in revert.reason
    reset = by_kind(result, "reset_admin_password")[0]
    assert reset.params == UserParams(kind="reset_admin_password", user=HELPDESK_ID)
    classify = by_kind(result, "classify_alert")[0]
    assert classify.params == ClassifyParams(alert_id=scenario["alert"]["id"], status="resolved",
                                             classification="truePositive", determination="compromisedAccount")


def test_ids_follow_plan_order_and_stages_run_contain_eradicate_recover_harden(scenario):
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence_for(scenario))

    assert [a.id for a in result.actions] == [f"a{i}" for i in range(1, len(result.actions) + 1)]
    ranks = [STAGE_RANK[a.stage] for a in result.actions if a.stage in STAGE_RANK]
    assert ranks == sorted(ranks)
    assert result.actions[-1].kind == "classify_alert"


def test_unblocks_require_only_the_verified_revert_of_the_alerted_connector(scenario):
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence_for(scenario))

    ids = {a.kind: a.id for a in result.actions}
    assert by_kind(result, "unblock_connector")[0].requires == [ids["revert_connector_change"]]
    assert by_kind(result, "unblock_sender")[0].requires == [ids["revert_connector_change"]]


def test_cases_begun_before_version_2_also_wait_for_every_eradication_step(scenario):
    case, evidence = case_for(scenario), evidence_for(scenario)
    since = evidence.collected_at - case.thresholds.lookback
    history = review(evidence.changes, evidence.connector, case.organization, since, evidence.collected_at, v2=False)
    graded = verdict("true_positive", TP_FINDINGS).model_copy(update={
        "history": history, "suspects": acting_suspects(history, [], evidence.admins, Directory.of(None)),
    })
    result = plan(case, graded, evidence, v2=False)

    ids = {a.kind: a.id for a in result.actions}
    expected = {ids["revert_connector_change"], ids["reset_admin_password"], ids["revoke_sessions"]}
    assert set(by_kind(result, "unblock_connector")[0].requires) == expected
    assert set(by_kind(result, "unblock_sender")[0].requires) == expected


def test_each_action_carries_the_policy_for_its_kind(scenario):
    policy = ApprovalPolicy(by_action={"classify_alert": "auto", "comment_alert": "auto",
                                       "revoke_sessions": "two_person"}, default="approve")
    result = plan_for(case_for(scenario, policy=policy), verdict("true_positive", TP_FINDINGS), evidence_for(scenario))

    assert {a.kind: a.policy for a in result.actions} == {
        "comment_alert": "auto", "revert_connector_change": "approve", "reset_admin_password": "approve",
        "revoke_sessions": "two_person", "unblock_connector": "approve", "unblock_sender": "approve",
        "require_admin_mfa": "approve", "classify_alert": "auto",
    }


def test_attacker_created_connector_is_disabled_then_removed_and_never_unblocked(scenario):
    changes = [change("2026-11-20T08:50:00Z", HELPDESK, "New-InboundConnector",
                      Name="Contoso Hybrid", SenderIPAddresses="198.51.100.23", ConnectorType="OnPremises")]
    findings = ["connector_created", "change_by_unexpected_actor", "sender_ip_not_on_premises", "volume_spike",
                "connector_blocked"]
    result = plan_for(case_for(scenario), verdict("true_positive", findings), evidence_for(scenario, changes=changes))

    assert [k for k, _ in kinds(result)] == [
        "comment_alert", "disable_connector", "remove_connector", "reset_admin_password", "revoke_sessions",
        "unblock_sender", "require_admin_mfa", "classify_alert",
    ]
    disable, remove = by_kind(result, "disable_connector")[0], by_kind(result, "remove_connector")[0]
    assert disable.params == ConnectorParams(kind="disable_connector", identity=GUID, direction="inbound")
    assert remove.params == ConnectorParams(kind="remove_connector", identity=GUID, direction="inbound")
    assert remove.policy == "two_person" and disable.policy == "approve"
    assert remove.stage == "contain" and int(remove.id[1:]) > int(disable.id[1:])
    assert "connector_created" in disable.reason
    assert disable.id in by_kind(result, "unblock_sender")[0].requires


def test_property_with_no_earlier_record_disables_instead_and_says_why(scenario):
    hijack = [audit_change(r) for r in scenario["audit_log"]][1:]   # drop the CHG-1042 record
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence_for(scenario, changes=hijack))

    assert not by_kind(result, "revert_connector_change")
    assert not by_kind(result, "unblock_connector"), "a connector that was not reverted stays restricted"
    disable = by_kind(result, "disable_connector")[0]
    assert "SenderIPAddresses" in disable.reason and "cannot be reverted safely" in disable.reason
    assert disable.params == ConnectorParams(kind="disable_connector", identity=GUID, direction="inbound")


def test_revert_uses_the_latest_record_before_the_earliest_unauthorized_change(scenario):
    changes = [
        change("2026-10-01T10:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.1",
               SenderDomains="smtp:*;1,smtp:contoso.com;1", RestrictDomainsToIPAddresses="True"),
        change("2026-11-18T19:12:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.5,203.0.113.6"),
        change("2026-11-20T08:55:00Z", HELPDESK, SenderIPAddresses="198.51.100.23", SenderDomains="smtp:*;1"),
        change("2026-11-20T09:05:00Z", "exadmin@contoso.com", SenderIPAddresses="198.51.100.99",
               RestrictDomainsToIPAddresses="False"),
    ]
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence_for(scenario, changes=changes))

    revert = by_kind(result, "revert_connector_change")[0]
    assert revert.params.restore == {
        "SenderIPAddresses": ["203.0.113.5", "203.0.113.6"],   # not the 09:05 value, not the October one
        "SenderDomains": ["smtp:*;1", "smtp:contoso.com;1"],   # split on "," only
        "RestrictDomainsToIPAddresses": True,                  # Exchange's "True" string is a boolean
    }


def test_approved_changes_are_not_reverted(scenario):
    changes = [
        change("2026-11-18T19:12:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.5"),  # CHG-1042
    ]
    findings = ["sender_ip_not_on_premises", "volume_spike", "p1_p2_mismatch"]
    result = plan_for(case_for(scenario), verdict("true_positive", findings),
                  evidence_for(scenario, changes=changes, admins=[]))

    assert [k for k, _ in kinds(result)] == ["comment_alert", "disable_connector", "unblock_sender", "classify_alert"]
    assert "neither created nor changed" in by_kind(result, "disable_connector")[0].reason


def test_untouched_true_positive_connector_is_disabled_with_no_admin_actions(scenario):
    findings = ["sender_ip_not_on_premises", "volume_spike"]
    result = plan_for(case_for(scenario), verdict("true_positive", findings),
                  evidence_for(scenario, changes=[], blocked_senders=[]))

    assert [k for k, _ in kinds(result)] == ["comment_alert", "disable_connector", "classify_alert"]
    assert by_kind(result, "classify_alert")[0].params.determination == "other"


def test_only_restricted_senders_that_are_the_spoofed_header_from_are_unblocked(scenario):
    evidence = evidence_for(
        scenario,
        blocked_senders=["Billing@Contoso.com", "payroll@contoso.com", "ceo@contoso.com"],
        mail=MailStats(spoofed_header_senders=["billing@contoso.com", "ceo@contoso.com", "other@contoso.com"]),
    )
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS), evidence)

    assert [a.target for a in by_kind(result, "unblock_sender")] == ["billing@contoso.com", "ceo@contoso.com"]
    assert by_kind(result, "unblock_sender")[0].params == UnblockSenderParams(sender_address="billing@contoso.com")


def test_admin_finding_makes_the_named_acting_admin_suspect(scenario):
    changes = [
        change("2026-11-01T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.5"),  # before the lookback
        change("2026-11-19T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.7"),
    ]
    findings = ["connector_modified", "admin_bruteforce_success", "volume_spike"]
    named = verdict("true_positive", findings,
                    admin_bruteforce_success=[Subject(kind="account", name="EXADMIN@contoso.com")])
    result = plan_for(case_for(scenario), named, evidence_for(scenario, changes=changes, admins=[]))

    assert [a.target for a in by_kind(result, "reset_admin_password")] == ["exadmin@contoso.com"]
    assert "admin_bruteforce_success" in by_kind(result, "reset_admin_password")[0].reason
    assert by_kind(result, "require_admin_mfa")[0].params == MfaParams(report_only=True)
    # The listed admin's unapproved change is still reverted to the value before it.
    assert by_kind(result, "revert_connector_change")[0].params.restore == {"SenderIPAddresses": ["203.0.113.5"]}


def test_listed_admin_without_admin_finding_is_not_suspect(scenario):
    changes = [change("2026-11-19T12:00:00Z", "exadmin@contoso.com", operation="New-InboundConnector",
                      SenderIPAddresses="203.0.113.7")]
    result = plan_for(case_for(scenario), verdict("true_positive", ["connector_created", "sender_ip_not_on_premises",
                                                                "volume_spike"]),
                  evidence_for(scenario, changes=changes, admins=[]))

    assert not by_kind(result, "reset_admin_password") and not by_kind(result, "require_admin_mfa")
    assert not by_kind(result, "remove_connector"), "a connector an admin created is not the attacker's"
    assert by_kind(result, "disable_connector")


# --------------------------------------------------------------------------- other verdicts


@pytest.mark.parametrize(("kind", "classification", "determination"), [
    ("benign_positive", "informationalExpectedActivity", "confirmedActivity"),
    ("false_positive", "falsePositive", "notMalicious"),
])
def test_benign_and_false_positive_comment_unblock_and_classify(scenario, kind, classification, determination):
    result = plan_for(case_for(scenario), verdict(kind, ["connector_modified", "change_approved"]), evidence_for(scenario))

    assert kinds(result) == [("comment_alert", ""), ("unblock_connector", "Contoso Hybrid"), ("classify_alert", "")]
    assert by_kind(result, "unblock_connector")[0].requires == []
    assert by_kind(result, "unblock_connector")[0].params == UnblockConnectorParams(connector_id=GUID)
    assert by_kind(result, "classify_alert")[0].params == ClassifyParams(
        alert_id=scenario["alert"]["id"], status="resolved", classification=classification, determination=determination)


def test_benign_expected_high_volume_connector_is_line_of_business(scenario):
    evidence = evidence_for(scenario, blocked_connector=False)
    org = Organization.model_validate({**scenario["organization"], "expected_high_volume_connectors": ["contoso hybrid"]})
    result = plan_for(case_for(scenario, organization=org), verdict("benign_positive", ["volume_spike"]), evidence)

    assert [k for k, _ in kinds(result)] == ["comment_alert", "classify_alert"]
    assert by_kind(result, "classify_alert")[0].params.determination == "lineOfBusinessApplication"


def test_needs_review_plans_only_the_comment_and_in_progress_status(scenario):
    evidence = evidence_for(scenario, unavailable=["IdentityLogonEvents"])
    findings = ["volume_spike", "evidence_unavailable"]
    result = plan_for(case_for(scenario), verdict("needs_review", findings), evidence)

    assert [k for k, _ in kinds(result)] == ["comment_alert", "classify_alert"]
    assert by_kind(result, "classify_alert")[0].params == ClassifyParams(alert_id=scenario["alert"]["id"], status="inProgress")
    comment = by_kind(result, "comment_alert")[0].params.comment
    assert "volume_spike" in comment and "evidence_unavailable" in comment
    assert "IdentityLogonEvents: could not be read" in comment and "control indicator" in comment
    assert "abuse indicator" not in comment, "volume_spike is an abuse indicator: it is not missing"


def test_unresolved_connector_plans_only_the_comment_and_status(scenario):
    result = plan_for(case_for(scenario), verdict("needs_review", ["connector_unresolved"]), None)

    assert [k for k, _ in kinds(result)] == ["comment_alert", "classify_alert"]
    comment = result.actions[0].params.comment
    assert "(unresolved)" in comment and "matched no connector or more than one" in comment


# --------------------------------------------------------------------------- plan hash


def test_plan_hash_is_stable_and_follows_the_plan(scenario):
    tp = verdict("true_positive", TP_FINDINGS)
    first = plan_for(case_for(scenario), tp, evidence_for(scenario))
    again = plan_for(case_for(scenario), tp, evidence_for(scenario))
    more = plan_for(case_for(scenario), tp, evidence_for(scenario, blocked_senders=["billing@contoso.com", "x@contoso.com"],
                                                     mail=MailStats(spoofed_header_senders=["billing@contoso.com", "x@contoso.com"])))
    strict = plan_for(case_for(scenario, policy=ApprovalPolicy(default="two_person")), tp, evidence_for(scenario))

    assert first.hash == again.hash
    assert len({first.hash, more.hash, strict.hash}) == 3


def test_admin_finding_naming_no_acting_admin_covers_them_all(scenario):
    changes = [
        change("2026-11-01T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.5"),
        change("2026-11-19T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.7"),
    ]
    unnamed = verdict("true_positive", ["connector_modified", "admin_unusual_location", "volume_spike"])
    result = plan_for(case_for(scenario), unnamed, evidence_for(scenario, changes=changes, admins=[]))

    assert [a.target for a in by_kind(result, "revoke_sessions")] == ["exadmin@contoso.com"]


def test_the_suspect_admin_is_the_account_the_finding_is_about_whatever_its_text_says(scenario):
    second_admin, second_id = "ops.admin@contoso.com", "5c3e0f10-0000-4000-8000-000000000005"
    org = Organization.model_validate({**scenario["organization"],
                                       "connector_admins": ["exadmin@contoso.com", second_admin]})
    changes = [
        change("2026-11-01T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.5"),
        change("2026-11-19T12:00:00Z", "exadmin@contoso.com", SenderIPAddresses="203.0.113.7"),
        change("2026-11-19T13:00:00Z", second_admin, SenderIPAddresses="203.0.113.8"),
    ]
    # The summary and evidence name nobody; the subject names the second admin by object id only.
    findings = ["connector_modified", "admin_bruteforce_success", "volume_spike"]
    about = verdict("true_positive", findings, admin_bruteforce_success=[Subject(kind="account", id=second_id)])
    evidence = evidence_for(scenario, changes=changes, admins=[AdminSignIns(upn=second_admin, object_id=second_id)])
    result = plan_for(case_for(scenario, organization=org), about, evidence)

    assert [(a.target, a.params) for a in by_kind(result, "reset_admin_password")] == [
        (second_admin, UserParams(kind="reset_admin_password", user=second_id))]
    assert [(a.target, a.params) for a in by_kind(result, "revoke_sessions")] == [
        (second_admin, UserParams(kind="revoke_sessions", user=second_id))]
    assert "exadmin@contoso.com" not in by_kind(result, "require_admin_mfa")[0].reason


def test_outbound_connector_is_reverted_with_its_own_cmdlet_shape(scenario):
    outbound = ConnectorConfig(guid="5d2a", name="Outbound to Fabrikam (TLS)", direction="outbound", enabled=True,
                               properties={"SmartHosts": []})
    changes = [
        change("2025-01-10T12:00:00Z", "exadmin@contoso.com", "New-OutboundConnector", SmartHosts=""),
        change("2026-11-20T08:55:00Z", HELPDESK, "Set-OutboundConnector", SmartHosts="198.51.100.23,relay.qx.example",
               UseMXRecord="False"),
    ]
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS),
                  evidence_for(scenario, connector=outbound, changes=changes, blocked_connector=False))

    assert not by_kind(result, "revert_connector_change"), "UseMXRecord was never set before: not revertable"
    assert by_kind(result, "disable_connector")[0].params == ConnectorParams(
        kind="disable_connector", identity="5d2a", direction="outbound")
    assert "UseMXRecord" in by_kind(result, "disable_connector")[0].reason

    changes[0] = change("2025-01-10T12:00:00Z", "exadmin@contoso.com", "New-OutboundConnector", SmartHosts="",
                        UseMXRecord="True")
    result = plan_for(case_for(scenario), verdict("true_positive", TP_FINDINGS),
                  evidence_for(scenario, connector=outbound, changes=changes, blocked_connector=False))
    assert by_kind(result, "revert_connector_change")[0].params == RevertParams(
        identity="5d2a", direction="outbound", restore={"SmartHosts": [], "UseMXRecord": True})
