"""Planning the whole playbook (docs/scenarios.md, version 2) from grading's reading of the sweep:
other connectors contained, the suspect admins' footholds removed, every suspect admin reset."""

from __future__ import annotations

from tests.audit_records import EXADMIN, HELPDESK, NOW, record
from tests.audit_records import connector_change as change
from workflows.grading import grade
from workflows.planning import plan
from workflows.types import (
    AlertRef,
    ApprovalPolicy,
    AuditEntry,
    CaseInput,
    ConnectorChange,
    ConnectorConfig,
    ConnectorParams,
    Evidence,
    MailboxGrant,
    MailboxPermissionParams,
    MailForwardingParams,
    MailStats,
    Organization,
    Plan,
    RevertParams,
    RoleAssignmentParams,
    Sweep,
    Thresholds,
    TransportRuleParams,
)

SNEAKY = "sneaky@contoso.com"
ORG = Organization(on_premises_ip_ranges=["203.0.113.0/28"], connector_admins=[EXADMIN])
CASE = CaseInput(tenant_id="t", alert=AlertRef(alert_id="a1", tenant_id="t"), organization=ORG,
                 policy=ApprovalPolicy(approvers=["soc1@contoso.com"]))
HYBRID = ConnectorConfig(guid="9b0e-hybrid", name="Contoso Hybrid", direction="inbound", enabled=True,
                         connector_type="OnPremises", properties={"SenderIPAddresses": ["198.51.100.23"]})
BACKUP = ConnectorConfig(guid="1111-backup", name="Backup Relay", direction="inbound", enabled=True)
FABRIKAM = ConnectorConfig(guid="2222-fabrikam", name="Outbound to Fabrikam", direction="outbound", enabled=True)
RANK = {"contain": 1, "eradicate": 2, "recover": 3, "harden": 4}
HISTORY = [
    change(2000, "Set-InboundConnector", "Contoso Hybrid", EXADMIN, SenderIPAddresses="203.0.113.5"),
    change(1, "Set-InboundConnector", "Contoso Hybrid", SenderIPAddresses="198.51.100.23"),
    change(2, "New-InboundConnector", "Backup Relay", Name="Backup Relay", SenderIPAddresses="198.51.100.0/24"),
    change(3000, "New-OutboundConnector", "Outbound to Fabrikam", EXADMIN, Name="Outbound to Fabrikam",
           SmartHosts="mx.fabrikam.com", UseMXRecord="False"),
    change(3, "Set-OutboundConnector", "Outbound to Fabrikam", SNEAKY, SmartHosts="mx.evil.example"),
]
FOOTPRINT = [
    record(5, "New-TransportRule", object_id="Copy finance", Name="Copy finance", BlindCopyTo="drop@evil.example"),
    record(4, "Set-Mailbox", Identity="ceo@contoso.com", ForwardingSmtpAddress="smtp:x@evil.example"),
    record(4, "New-InboxRule", Mailbox="ceo@contoso.com", Name="Sync", ForwardTo="x@evil.example"),
    record(3, "Add-MailboxPermission", Identity="finance@contoso.com", User=SNEAKY, AccessRights="FullAccess"),
    record(3, "Add-MailboxPermission", Identity="finance@contoso.com", User=SNEAKY, AccessRights="SendAs"),
    record(2, "Add member to role.", object_id="svc-fax@contoso.com", modified={"Role.DisplayName": "Exchange Administrator"}),
    record(2, "Add member to role.", object_id="svc-fax@contoso.com", modified={"Role.DisplayName": '"Global Reader"'}),
    record(1, "New-AcceptedDomain", object_id="contoso-payroll.com"),
]


def evidence(history: list[ConnectorChange] = HISTORY, footprint: list[AuditEntry] = FOOTPRINT,
             mail: MailStats = MailStats(messages=500, p1_p2_mismatch=400)) -> Evidence:
    return Evidence(
        connector=HYBRID,
        changes=[c for c in history if c.object_id == "Contoso Hybrid"],
        mail=mail, blocked_connector=True,
        sweep=Sweep(connectors=[HYBRID, BACKUP, FABRIKAM], records=history, admin_records=footprint),
        collected_at=NOW,
    )


def plan_of(e: Evidence) -> Plan:
    return plan(CASE, grade(e, ORG, Thresholds(), NOW), e)


def test_true_positive_contains_every_suspicious_connector_and_removes_every_foothold():
    result = plan_of(evidence())

    assert [(a.kind, a.target) for a in result.actions] == [
        ("comment_alert", ""),
        ("revert_connector_change", "Contoso Hybrid"),
        ("disable_connector", "Backup Relay"),
        ("revert_connector_change", "Outbound to Fabrikam"),
        ("disable_transport_rule", "Copy finance"),
        ("reset_admin_password", HELPDESK),
        ("revoke_sessions", HELPDESK),
        ("reset_admin_password", SNEAKY),
        ("revoke_sessions", SNEAKY),
        ("remove_mail_forwarding", "ceo@contoso.com"),
        ("remove_mailbox_permission", "finance@contoso.com"),
        ("remove_role_assignment", "svc-fax@contoso.com"),
        ("unblock_connector", "Contoso Hybrid"),
        ("require_admin_mfa", ""),
        ("classify_alert", ""),
    ]
    by_target = {(a.kind, a.target): a for a in result.actions}
    assert by_target["disable_connector", "Backup Relay"].params == ConnectorParams(
        kind="disable_connector", identity="1111-backup", direction="inbound")
    assert by_target["revert_connector_change", "Outbound to Fabrikam"].params == RevertParams(
        identity="2222-fabrikam", direction="outbound", restore={"SmartHosts": ["mx.fabrikam.com"]})
    assert by_target["disable_transport_rule", "Copy finance"].params == TransportRuleParams(name="Copy finance")
    assert by_target["remove_mail_forwarding", "ceo@contoso.com"].params == MailForwardingParams(
        mailbox="ceo@contoso.com", inbox_rules=["Sync"])
    assert by_target["remove_mailbox_permission", "finance@contoso.com"].params == MailboxPermissionParams(
        mailbox="finance@contoso.com", grants=[MailboxGrant(user=SNEAKY, access_rights=["FullAccess", "SendAs"])])
    assert by_target["remove_role_assignment", "svc-fax@contoso.com"].params == RoleAssignmentParams(
        user="svc-fax@contoso.com", roles=["Exchange Administrator", "Global Reader"])
    assert {a.policy for a in result.actions if a.kind not in ("comment_alert", "classify_alert")} == {"approve"}


def test_phases_run_in_order_and_only_the_alerted_containment_gates_the_unblock():
    result = plan_of(evidence())

    ranks = [RANK[a.stage] for a in result.actions[1:-1]]
    assert ranks == sorted(ranks), "comment first, then contain, eradicate, recover, harden"
    contain = next(a.id for a in result.actions if a.target == "Contoso Hybrid")
    assert next(a for a in result.actions if a.kind == "unblock_connector").requires == [contain]
    assert result.actions[-1].kind == "classify_alert"


def test_another_connector_with_no_earlier_value_is_disabled_and_never_removed():
    history = [c for c in HISTORY if c.operation != "New-OutboundConnector"]
    result = plan_of(evidence(history=history))

    fabrikam = [a for a in result.actions if a.target == "Outbound to Fabrikam"]
    assert [a.kind for a in fabrikam] == ["disable_connector"]
    assert "cannot be reverted safely" in fabrikam[0].reason
    assert not [a for a in result.actions if a.kind == "remove_connector"]


def test_other_verdicts_plan_none_of_it_but_name_the_findings():
    result = plan_of(evidence(mail=MailStats()))   # no abuse indicator: needs_review

    assert [a.kind for a in result.actions] == ["comment_alert", "classify_alert"]
    comment = result.actions[0].params.comment  # type: ignore[union-attr]
    for finding in ("other_connector_suspicious", "admin_transport_rule_change", "admin_mail_forwarding",
                    "admin_mailbox_permission", "admin_role_granted", "admin_accepted_domain_added"):
        assert f"- {finding}:" in comment
