"""Scenario loading: time shift, generators, audit log as CloudAppEvents, and clear errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import get_args

import pytest
from conftest import EXAMPLE

from emulator.scenario import ContractAction, ContractFinding, ScenarioError, load_scenario
from tests.conftest import PROJECT_SCENARIOS
from workflows.types import ActionKind, FindingId

REAL_NOW = datetime(2027, 3, 4, 15, 42, 10, tzinfo=timezone.utc)
# 2026-11-20T10:00Z -> 2027-03-04T15:42:10Z is 104 days 5 h 42 min: shifted by 104 days 5 h.
SHIFT = timedelta(days=104, hours=5)

MINIMAL = """
id: minimal
now: "2026-11-20T10:00:00Z"
tenant:
  id: t-1
  users:
    - {id: u-1, userPrincipalName: Admin@Contoso.com, displayName: Admin, roles: [Exchange Administrator]}
alert: {id: a-1, createdDateTime: "2026-11-20T09:45:00Z"}
"""


def shifted(text: str) -> str:
    when = datetime.fromisoformat(text.replace("Z", "+00:00")) + SHIFT
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_example_loads_and_every_timestamp_moves_by_whole_hours() -> None:
    scenario = load_scenario(EXAMPLE, real_now=REAL_NOW)
    assert scenario.now == datetime(2027, 3, 4, 15, 0, tzinfo=timezone.utc)
    change = scenario.organization.approved_changes[0]
    assert change.from_.isoformat() == shifted("2026-11-18T18:00:00Z").replace("Z", "+00:00")
    hybrid = scenario.tenant.inbound_connectors[0]
    assert hybrid["WhenCreated"] == shifted("2024-03-01T09:00:00Z")
    assert hybrid["WhenChanged"] == shifted("2026-11-20T08:55:00Z")
    assert scenario.tenant.blocked_connectors[0]["CreatedDatetime"] == shifted("2026-11-20T09:40:00Z")
    assert scenario.audit_log[1].CreationDate == datetime(2026, 11, 20, 8, 55, tzinfo=timezone.utc) + SHIFT
    assert scenario.alert["createdDateTime"] == shifted("2026-11-20T09:45:00Z")
    assert scenario.tables["IdentityLogonEvents"][-1]["Timestamp"] == shifted("2026-11-20T08:41:00Z")
    # Generator starts move too: the spray's first row.
    spray = [r for r in scenario.tables["EmailEvents"] if r["NetworkMessageId"] == "spam-0"]
    assert spray[0]["Timestamp"] == shifted("2026-11-20T09:00:00Z")
    # Values that only look a little like times stay as they are.
    assert hybrid["SenderIPAddresses"] == ["198.51.100.23"]
    assert scenario.organization.on_premises_ip_ranges == ["203.0.113.0/28"]


def test_timestamps_shift_at_any_depth_including_yaml_timestamps_and_expected() -> None:
    text = MINIMAL + """
tables:
  Custom:
    - {Timestamp: 2026-11-20T09:00:00Z, Nested: {deeper: ["2026-11-19T10:30:00.5Z", "not 2026-11-19T10:30:00Z"]},
       Day: 2026-11-19, Number: 7}
expected:
  tenant:
    conditional_access_policies: [{createdDateTime: "2026-11-01T00:00:00+02:00"}]
"""
    scenario = load_scenario(text, real_now=REAL_NOW)
    row = scenario.tables["Custom"][0]
    assert row["Timestamp"] == shifted("2026-11-20T09:00:00Z")  # an unquoted YAML timestamp
    assert row["Nested"]["deeper"] == [
        (datetime(2026, 11, 19, 10, 30, 0, 500000, tzinfo=timezone.utc) + SHIFT).strftime("%Y-%m-%dT%H:%M:%S.5Z"),
        "not 2026-11-19T10:30:00Z",
    ]
    assert row["Day"] == "2026-11-19" and row["Number"] == 7  # a date alone is no date-time
    policy = scenario.expected.tenant["conditional_access_policies"][0]  # type: ignore[index]
    assert policy["createdDateTime"] == shifted("2026-10-31T22:00:00Z")


def test_generators_expand_placeholders_and_keep_other_braces_literal() -> None:
    text = MINIMAL + """
tables:
  EmailEvents:
    - {Timestamp: "2026-11-20T08:00:00Z", NetworkMessageId: plain}
    - repeat: 5
      start: "2026-11-20T09:00:00Z"
      every: 0.1s
      row:
        NetworkMessageId: "m-{i}"
        DeliveryLocation: "{cycle:Inbox,Junk folder}"
        ThreatTypes: "{cycle:,Spam,Phish}"
        DetectionMethods: '{"Phish":["URL detonation"]}'
        Other: "{j} and {cycle} stay"
        Nested: {list: ["to-{i}@x{i}.example", 3, true]}
        Count: 12
"""
    rows = load_scenario(text, real_now=REAL_NOW).tables["EmailEvents"]
    assert len(rows) == 6 and rows[0]["NetworkMessageId"] == "plain"
    generated = rows[1:]
    assert [r["NetworkMessageId"] for r in generated] == ["m-0", "m-1", "m-2", "m-3", "m-4"]
    assert [r["DeliveryLocation"] for r in generated] == ["Inbox", "Junk folder"] * 2 + ["Inbox"]
    assert [r["ThreatTypes"] for r in generated] == ["", "Spam", "Phish", "", "Spam"]
    assert {r["DetectionMethods"] for r in generated} == {'{"Phish":["URL detonation"]}'}
    assert generated[2]["Other"] == "{j} and {cycle} stay"
    assert generated[3]["Nested"] == {"list": ["to-3@x3.example", 3, True]}
    assert generated[4]["Count"] == 12
    start = datetime(2026, 11, 20, 9, tzinfo=timezone.utc) + SHIFT
    assert generated[0]["Timestamp"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert generated[3]["Timestamp"] == (start + timedelta(milliseconds=300)).strftime("%Y-%m-%dT%H:%M:%S.3Z")


def test_audit_records_are_cloud_app_events_too() -> None:
    text = MINIMAL + """
tables:
  CloudAppEvents:
    - {Timestamp: "2026-11-20T07:00:00Z", ActionType: MailItemsAccessed}
audit_log:
  - {CreationDate: "2026-11-20T08:55:00Z", Operation: Set-InboundConnector, UserIds: admin@contoso.com,
     AuditData: {ObjectId: Hybrid, Parameters: [{Name: Identity, Value: Hybrid}]}}
  - {CreationDate: "2026-11-20T08:56:00Z", Operation: Add-MailboxPermission, UserIds: stranger@elsewhere.example}
"""
    rows = load_scenario(text, real_now=REAL_NOW).tables["CloudAppEvents"]
    assert rows[0]["ActionType"] == "MailItemsAccessed"  # the scenario's own rows first
    assert rows[1] == {
        "Timestamp": shifted("2026-11-20T08:55:00Z"), "ActionType": "Set-InboundConnector",
        "RawEventData": {"ObjectId": "Hybrid", "Parameters": [{"Name": "Identity", "Value": "Hybrid"}]},
        "AccountObjectId": "u-1", "AccountDisplayName": "Admin",  # the UPN matches case-insensitively
    }
    assert rows[2]["AccountObjectId"] == "" and rows[2]["AccountDisplayName"] == ""


def test_unknown_top_level_keys_are_named() -> None:
    with pytest.raises(ScenarioError, match="unknown top-level key.*extras, toolz"):
        load_scenario(MINIMAL + "toolz: 1\nextras: 2\n")


@pytest.mark.parametrize(
    ("addition", "message"),
    [
        ("tables: {T: [{repeat: 2, every: 7s, row: {a: 1}}]}", r"tables\.T\[0\]\.start: required"),
        ("tables: {T: [{repeat: 2, start: '2026-11-20T09:00:00Z', every: 7 sec, row: {a: 1}}]}", r"tables\.T\[0\]\.every"),
        ("tables: {T: [{repeat: 2, start: '2026-11-20T09:00:00Z', row: {Timestamp: x}}]}", r"row\.Timestamp"),
        ("tables: {T: [{Timestamp: yesterday}]}", r"T\[0\]\.Timestamp"),
        ("mode: enforced", r"^<scenario text>: mode:"),
        ("faults: [{api: 'exo:Set-InboundConnector'}]", r"faults\[0\]: .*exactly one of status"),
        ("faults: [{api: 'graph:FETCH /users', status: 500}]", r"faults\[0\]\.api"),
        ("approvals: {default: maybe}", r"approvals\.default"),
        ("expected: {findings_include: [connector_hijacked]}", r"expected\.findings_include\[0\]"),
        ("expected: {actions: [{kind: nuke_tenant}]}", r"expected\.actions: .*nuke_tenant"),
        ("organization: {on_premises_ip_ranges: [somewhere]}", r"organization\.on_premises_ip_ranges"),
        ("approvals: {by_action: {'nuke_tenant:x': approve}}", r"approvals\.by_action: .*nuke_tenant"),
        ("expected: {actions_exclude: [{kind: disable_connector}]}", r"expected\.actions_exclude\[0\]"),
        ("expected: {tenant: {mailbox: []}}", r"unknown tenant section\(s\): mailbox"),
    ],
)
def test_malformed_scenarios_fail_with_the_field(addition: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(MINIMAL + addition + "\n")


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(MINIMAL.replace("id: t-1", "identifier: t-1"))
    with pytest.raises(ScenarioError, match=rf"^{path}: tenant\.id: Field required"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="now: required"):
        load_scenario(MINIMAL.replace('now: "2026-11-20T10:00:00Z"', "now: soon"))


SCENARIO_FILES = sorted(PROJECT_SCENARIOS.glob("*.yaml")) + sorted(PROJECT_SCENARIOS.glob("v2/*.yaml"))


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: str(p.relative_to(PROJECT_SCENARIOS)))
def test_every_scenario_file_loads_and_validates(path: Path) -> None:
    scenario = load_scenario(path, real_now=REAL_NOW)
    assert scenario.id == path.stem


def test_quells_vocabularies_are_the_contracts() -> None:
    """quell produces only findings and actions the contract names (the contract may name more)."""
    assert set(get_args(FindingId)) <= set(get_args(ContractFinding))
    assert set(get_args(ActionKind)) <= set(get_args(ContractAction))


V2_TENANT = """
  transport_rules:
    - {Name: Copy finance mail, BlindCopyTo: [drop@fabrikam-billing.net]}
  mailboxes:
    - UserPrincipalName: ceo@contoso.com
      ForwardingSmtpAddress: "smtp:ceo.archive@outlook-mail.net"
      inbox_rules: [{Name: Sync, ForwardTo: [ceo.archive@outlook-mail.net]}]
      permissions: [{User: helpdesk.op@contoso.com, AccessRights: [fullaccess]}]
"""


def with_v2_tenant(sections: str = V2_TENANT) -> str:
    return MINIMAL.replace("alert:", sections.lstrip("\n") + "alert:")


def test_the_version_2_tenant_sections_load() -> None:
    tenant = load_scenario(with_v2_tenant(), real_now=REAL_NOW).tenant
    assert tenant.transport_rules[0]["Name"] == "Copy finance mail"
    mailbox = tenant.mailboxes[0]
    assert mailbox.DeliverToMailboxAndForward is False and mailbox.ForwardingAddress is None
    assert mailbox.inbox_rules[0]["ForwardTo"] == ["ceo.archive@outlook-mail.net"]
    assert mailbox.permissions[0].AccessRights == ["FullAccess"]  # Exchange's spelling


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("Name: Copy finance mail", "Priority: 0"), r"tenant\.transport_rules: .*needs a non-empty string Name"),
        (("{Name: Sync,", "{Enabled: true,"), r"tenant\.mailboxes\[0\]\.inbox_rules: .*inbox rule"),
        (("AccessRights: [fullaccess]", "AccessRights: [Everything]"), r"permissions\[0\]\.AccessRights: .*Everything"),
        (("AccessRights: [fullaccess]", "AccessRights: []"), r"permissions\[0\]\.AccessRights"),
        (("UserPrincipalName: ceo@contoso.com", "Alias: ceo"), r"mailboxes\[0\]\.UserPrincipalName: Field required"),
    ],
)
def test_malformed_version_2_sections_fail_with_the_field(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(with_v2_tenant(V2_TENANT.replace(*change)))


def test_a_mailbox_appears_once() -> None:
    twice = V2_TENANT + "    - {UserPrincipalName: CEO@contoso.com}\n"
    with pytest.raises(ScenarioError, match="second mailbox for CEO@contoso.com"):
        load_scenario(with_v2_tenant(twice))
