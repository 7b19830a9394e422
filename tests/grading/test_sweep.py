"""The whole playbook's findings (docs/scenarios.md, version 2): the connector sweep, deleted
connectors, who is suspect, and what the suspect admins also did; none of them moves the verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.audit_records import EXADMIN, HELPDESK, NOW, connector_change, record
from workflows.grading import connector_unresolved_verdict, grade
from workflows.types import (
    AdminSignIns,
    ApprovedChange,
    AuditEntry,
    ConnectorChange,
    ConnectorConfig,
    ConnectorResolution,
    DirectoryAccount,
    Evidence,
    Finding,
    Organization,
    Sweep,
    Thresholds,
    Verdict,
)

LOOKBACK_START = NOW - timedelta(days=7)
SYSTEM = "NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"
ORG = Organization(
    on_premises_ip_ranges=["203.0.113.0/28"], connector_admins=[EXADMIN],
    approved_changes=[ApprovedChange(ticket="CHG-7", connector="Partner Relay", by=EXADMIN,
                                     **{"from": NOW - timedelta(hours=30)}, to=NOW - timedelta(hours=20))],
)
HYBRID = ConnectorConfig(guid="9b0e-hybrid", name="Contoso Hybrid", direction="inbound", enabled=True,
                         connector_type="OnPremises", properties={"SenderIPAddresses": ["203.0.113.5"]})
PARTNER = ConnectorConfig(guid="5d2a-partner", name="Partner Relay", direction="inbound", enabled=True,
                          connector_type="Partner")
OUTBOUND = ConnectorConfig(guid="77aa-outbound", name="Outbound to Fabrikam", direction="outbound", enabled=True)
HIJACK = connector_change(1, "Set-InboundConnector", "Contoso Hybrid", SenderIPAddresses="198.51.100.23")


def evidence(records: list[ConnectorChange] | None = None, admin_records: list[AuditEntry] | None = None,
             accounts: list[DirectoryAccount] | None = None, changes: list[ConnectorChange] | None = None,
             connectors: list[ConnectorConfig] | None = None) -> Evidence:
    records = records or []
    return Evidence(
        connector=HYBRID,
        changes=[HIJACK] if changes is None else changes,
        admins=[AdminSignIns(upn=HELPDESK, object_id="2a7d-helpdesk")],
        sweep=Sweep(connectors=connectors or [HYBRID, PARTNER, OUTBOUND], records=[HIJACK, *records],
                    admin_records=admin_records or [], accounts=accounts or []),
        collected_at=NOW,
    )


def graded(e: Evidence) -> Verdict:
    return grade(e, ORG, Thresholds(), NOW)


def found(v: Verdict, finding_id: str) -> list[Finding]:
    return [f for f in v.findings if f.id == finding_id]


# --------------------------------------------------------------------------- what counts as a modification


@pytest.mark.parametrize(("parameters", "modifies"), [
    ({"TreatMessagesAsInternal": "True"}, True),
    ({"EFSkipIPs": "198.51.100.0/24"}, True),
    ({"Enabled": "True", "Comment": "ticket 12"}, False),
    ({"Confirm": "False", "Force": "True", "WhatIf": "True", "ErrorAction": "Stop"}, False),
])
def test_any_parameter_but_enabled_comment_and_switches_modifies(parameters, modifies):
    change = connector_change(1, "Set-InboundConnector", "Contoso Hybrid", **parameters)
    v = graded(evidence(changes=[change]))
    assert v.has("connector_modified") is modifies


def test_cases_begun_before_version_2_keep_the_first_list():
    change = connector_change(1, "Set-InboundConnector", "Contoso Hybrid", TreatMessagesAsInternal="True")
    v = grade(evidence(changes=[change]), ORG, Thresholds(), NOW, v2=False)
    assert not v.has("connector_modified")


# --------------------------------------------------------------------------- other and deleted connectors


def test_another_connector_changed_by_a_non_admin_is_suspicious_and_its_actor_suspect():
    sneaky = connector_change(2, "Set-OutboundConnector", "Outbound to Fabrikam", "sneaky@contoso.com",
                              SmartHosts="mx.evil.example")
    v = graded(evidence([sneaky]))

    [finding] = found(v, "other_connector_suspicious")
    assert finding.evidence["connector"] == "Outbound to Fabrikam"
    assert [(s.kind, s.name) for s in finding.subjects] == [
        ("connector", "Outbound to Fabrikam"), ("account", "sneaky@contoso.com")]
    assert [o.connector.name for o in v.others] == ["Outbound to Fabrikam"]
    assert {s.upn: s.because for s in v.suspects} == {
        HELPDESK: ["change_by_unexpected_actor"], "sneaky@contoso.com": ["other_connector_suspicious"]}
    assert v.kind == graded(evidence()).kind, "the sweep never moves the verdict"


def test_each_connector_keeps_its_own_records_across_renames_and_directions():
    """Many connectors, one audit history: a connector's records include those under its old name,
    and a same-named connector of the other direction, or another connector, never takes them."""
    relays = [ConnectorConfig(guid=f"relay-{n}", name=f"Relay {n}", direction="inbound", enabled=True)
              for n in range(30)]
    twin = ConnectorConfig(guid="relay-3-out", name="Relay 3", direction="outbound", enabled=True)
    before = connector_change(5, "Set-InboundConnector", "Old Relay 3", "sneaky@contoso.com", SmartHosts="a.evil.example")
    renamed = connector_change(4, "Set-InboundConnector", "Old Relay 3", EXADMIN, Name="Relay 3")
    after = connector_change(3, "Set-InboundConnector", "Relay 3", "sneaky@contoso.com", SenderIPAddresses="192.0.2.1")
    elsewhere = [connector_change(2, "Set-InboundConnector", f"Relay {n}", EXADMIN, Comment="checked")
                 for n in range(30) if n != 3]
    v = graded(evidence([before, renamed, after, *elsewhere], connectors=[HYBRID, *relays, twin]))

    [other] = v.others
    assert other.connector.name == "Relay 3" and other.connector.direction == "inbound"
    assert other.records == [before, renamed, after]
    [finding] = found(v, "other_connector_suspicious")
    assert finding.evidence["connector"] == "Relay 3"


def test_an_approved_change_or_an_admin_change_to_another_connector_is_not_suspicious():
    approved = connector_change(25, "Set-InboundConnector", "Partner Relay", EXADMIN, SenderIPAddresses="192.0.2.9")
    by_admin = connector_change(3, "Set-OutboundConnector", "Outbound to Fabrikam", EXADMIN, TlsDomain="fabrikam.com")
    v = graded(evidence([approved, by_admin]))

    assert not found(v, "other_connector_suspicious")
    assert [s.upn for s in v.suspects] == [HELPDESK]


def test_a_suspect_admin_makes_any_change_suspicious_even_as_a_connector_admin():
    # exadmin changed the alerted connector and brute force makes it suspect.
    hijack = connector_change(1, "Set-InboundConnector", "Contoso Hybrid", EXADMIN, SenderIPAddresses="198.51.100.23")
    other = connector_change(2, "Set-OutboundConnector", "Outbound to Fabrikam", EXADMIN, SmartHosts="mx.evil.example")
    e = evidence([other], changes=[hijack]).model_copy(update={"admins": [AdminSignIns(
        upn=EXADMIN, object_id="6f1c-exadmin", successful_signins=6, countries={"US": 5, "NL": 1})]})
    v = graded(e)

    assert v.has("admin_unusual_location") and found(v, "other_connector_suspicious")
    assert [(s.upn, s.because) for s in v.suspects] == [
        (EXADMIN, ["admin_unusual_location", "other_connector_suspicious"])]


def test_a_deleted_connector_is_reported_with_its_last_known_properties():
    records = [
        connector_change(2000, "New-InboundConnector", "Legacy Relay", EXADMIN, Name="Legacy Relay",
                         ConnectorType="OnPremises", SenderIPAddresses="203.0.113.7"),
        connector_change(900, "Set-InboundConnector", "Legacy Relay", EXADMIN, SenderIPAddresses="203.0.113.8",
                         Comment="moved"),
        connector_change(4, "Remove-InboundConnector", "Legacy Relay", Confirm="False"),
    ]
    v = graded(evidence(records))

    [deleted] = found(v, "connector_deleted")
    assert deleted.evidence["connector"] == "Legacy Relay"
    assert deleted.evidence["last_known"] == {"Name": "Legacy Relay", "ConnectorType": "OnPremises",
                                              "SenderIPAddresses": ["203.0.113.8"], "Comment": "moved"}
    assert "connector_deleted" in next(s for s in v.suspects if s.upn == HELPDESK).because


def test_a_deleted_connector_recreated_under_its_name_is_known_by_what_came_before_the_deletion():
    records = [
        connector_change(900, "Set-InboundConnector", "Legacy Relay", EXADMIN, SenderIPAddresses="203.0.113.8"),
        connector_change(4, "Remove-InboundConnector", "Legacy Relay", Confirm="False"),
        connector_change(3, "New-InboundConnector", "Legacy Relay", Name="Legacy Relay", SenderIPAddresses="198.51.100.9"),
    ]
    [deleted] = found(graded(evidence(records)), "connector_deleted")
    assert deleted.evidence["last_known"] == {"SenderIPAddresses": ["203.0.113.8"]}


def test_a_deletion_by_a_connector_admin_who_is_not_suspect_is_not_reported():
    removal = connector_change(4, "Remove-OutboundConnector", "Old Outbound", EXADMIN)
    assert not found(graded(evidence([removal])), "connector_deleted")


def test_an_actor_the_directory_does_not_know_is_never_suspect():
    by_system = connector_change(2, "Set-InboundConnector", "Partner Relay", SYSTEM, TlsSenderCertificateName="x")
    v = graded(evidence([by_system], accounts=[DirectoryAccount(upn=SYSTEM),
                                               DirectoryAccount(upn=HELPDESK, object_id="2a7d-helpdesk")]))

    [finding] = found(v, "other_connector_suspicious")
    assert [s.kind for s in finding.subjects] == ["connector"]
    assert [s.upn for s in v.suspects] == [HELPDESK]


def test_the_sweep_runs_when_the_alerted_connector_is_unresolved():
    removal = connector_change(4, "Remove-InboundConnector", "Contoso Hybrid")
    resolution = ConnectorResolution(method="none", reason="no connector")
    v = connector_unresolved_verdict(resolution, Sweep(records=[removal]), ORG, LOOKBACK_START, NOW)

    assert v.kind == "needs_review"
    assert [f.id for f in v.findings] == ["connector_unresolved", "connector_deleted"]


# --------------------------------------------------------------------------- what the suspect admin also did


def footprint(*records: AuditEntry) -> Verdict:
    return graded(evidence(admin_records=list(records)))


def test_transport_rule_records_name_the_rule_as_it_is_called_now():
    v = footprint(
        record(3, "New-TransportRule", object_id="Copy finance", Name="Copy finance", BlindCopyTo="drop@evil.example"),
        record(2, "Set-TransportRule", object_id="Copy finance", Identity="Copy finance", Name="Disclaimer v2"),
        record(1, "Enable-TransportRule", object_id="Disclaimer v2", Identity="Disclaimer v2"),
        record(1, "New-TransportRule", EXADMIN, object_id="Legit", Name="Legit"),
    )
    rules = found(v, "admin_transport_rule_change")
    assert len(rules) == 3, "one finding per record of the suspect admin, none for the admin's own rule"
    assert {s.name for f in rules for s in f.of("transport_rule")} == {"Disclaimer v2"}
    assert rules[0].evidence["rule"] == "Copy finance"


@pytest.mark.parametrize("value", [None, "", "$null", []])
def test_clearing_forwarding_is_no_forwarding(value):
    assert not found(footprint(record(2, "Set-Mailbox", Identity="ceo@contoso.com", ForwardingSmtpAddress=value)),
                     "admin_mail_forwarding")


def test_forwarding_by_mailbox_and_by_inbox_rule():
    v = footprint(
        record(3, "Set-Mailbox", Identity="ceo@contoso.com", ForwardingSmtpAddress="smtp:x@evil.example"),
        record(2, "New-InboxRule", Mailbox="cfo@contoso.com", Name="Sync", ForwardTo="x@evil.example"),
        record(2, "Set-InboxRule", Identity="payroll@contoso.com\\Archive", RedirectTo="x@evil.example"),
        record(2, "New-InboxRule", Name="Mine", ForwardAsAttachmentTo="x@evil.example"),
        record(2, "New-InboxRule", Mailbox="cfo@contoso.com", Name="Tidy", MoveToFolder="Archive"),
        record(1, "Enable-InboxRule", Identity="cfo@contoso.com\\Tidy"),
    )
    forwarding = found(v, "admin_mail_forwarding")
    assert [(f.evidence["mailbox"], f.evidence.get("rule")) for f in forwarding] == [
        ("ceo@contoso.com", None), ("cfo@contoso.com", "Sync"), ("payroll@contoso.com", "Archive"),
        (HELPDESK, "Mine"),  # a New-InboxRule without Mailbox acts on the actor's own mailbox
    ]


def test_delegates_roles_and_domains():
    v = footprint(
        record(3, "Add-MailboxPermission", object_id="finance@contoso.com", Identity="finance@contoso.com",
               User="svc-archive@contoso.com", AccessRights="FullAccess"),
        record(2, "Add member to role.", object_id="svc-fax@contoso.com",
               modified={"Role.DisplayName": '"Exchange Administrator"'}),
        record(1, "New-AcceptedDomain", object_id="contoso-payroll.com", Name="contoso-payroll.com"),
    )
    [permission] = found(v, "admin_mailbox_permission")
    assert (permission.evidence["mailbox"], permission.evidence["grantee"], permission.evidence["access_rights"]) == (
        "finance@contoso.com", "svc-archive@contoso.com", ["FullAccess"])
    [role] = found(v, "admin_role_granted")
    assert (role.evidence["grantee"], role.evidence["role"]) == ("svc-fax@contoso.com", "Exchange Administrator")
    assert found(v, "admin_accepted_domain_added")[0].evidence["domain"] == "contoso-payroll.com"
    assert [s.upn for s in v.suspects] == [HELPDESK], "an account is not suspect because it was granted something"


def test_records_of_admins_who_are_not_suspect_or_outside_the_lookback_count_for_nothing():
    v = footprint(
        record(2, "Add member to role.", EXADMIN, object_id="x@contoso.com", modified={"Role.DisplayName": "Global Administrator"}),
        record(24 * 8, "New-AcceptedDomain", object_id="old.example"),
    )
    assert not found(v, "admin_role_granted") and not found(v, "admin_accepted_domain_added")
