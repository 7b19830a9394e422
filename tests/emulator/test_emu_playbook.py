"""The version 2 surface ("the whole playbook"): transport rules, mailboxes, inbox rules, mailbox
permissions and directory role assignments, their audit records in every audit source, faults on
every new call, and the tenant snapshot after the changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from emu_client import Api, exo_reason

from emulator.scenario import Fault, Scenario, load_scenario
from emulator.server import running_emulator

PLAYBOOK = Path(__file__).parent / "playbook_tenant.yaml"
RULE_GUID = "5d1e0c70-0000-4000-8000-000000000040"
SVC_SYNC = "7d3e9a60-0000-4000-8000-000000000006"
NOT_FOUND = "ManagementObjectNotFoundException"


@pytest.fixture(scope="module")
def playbook() -> Scenario:
    return load_scenario(PLAYBOOK)


@pytest.fixture
def api(playbook: Scenario, cert_dir: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    """A fresh playbook tenant per test, with the faults a test names (`@with_faults`)."""
    faults = [Fault.model_validate(f) for f in getattr(request, "param", [])]
    with running_emulator(playbook.model_copy(update={"faults": faults}), cert_dir) as handle:
        client = Api(handle)
        yield client
        client.http.close()


def with_faults(*faults: dict):
    return pytest.mark.parametrize("api", [list(faults)], indirect=True)


def value(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["value"]


def mailbox_state(api: Api, upn: str = "ceo@contoso.com") -> dict:
    return next(m for m in api.state()["tenant"]["mailboxes"] if m["UserPrincipalName"] == upn)


# --------------------------------------------------------------------------- transport rules


def test_get_transport_rules_all_or_by_name_or_guid(api: Api) -> None:
    rules = value(api.exo("Get-TransportRule"))
    assert [(r["Name"], r["State"], r["Priority"]) for r in rules] == [
        ("Copy finance mail", "Enabled", 0), ("Disclaimer", "Enabled", 1)]
    by_name = value(api.exo("Get-TransportRule", Identity="copy FINANCE mail"))
    assert by_name == value(api.exo("Get-TransportRule", Identity=RULE_GUID))
    assert by_name[0]["Identity"] == "Copy finance mail" and by_name[0]["BlindCopyTo"] == ["drop@fabrikam-billing.net"]
    assert rules[1]["Guid"] and rules[1]["Mode"] == "Enforce"  # defaults for what the scenario leaves out
    missing = api.exo("Get-TransportRule", Identity="Nope")
    assert missing.status_code == 400 and NOT_FOUND in exo_reason(missing) and "'Nope'" in exo_reason(missing)


def test_disable_transport_rule(api: Api) -> None:
    before = value(api.exo("Get-TransportRule", Identity=RULE_GUID))[0]
    assert value(api.exo("Disable-TransportRule", Identity="Copy finance mail", Confirm=False)) == []
    rule = value(api.exo("Get-TransportRule", Identity=RULE_GUID))[0]
    assert rule["State"] == "Disabled" and rule["WhenChanged"] > before["WhenChanged"]
    record = api.state()["audit_log"][-1]
    assert (record["Operation"], record["AuditData"]["ObjectId"]) == ("Disable-TransportRule", "Copy finance mail")
    assert "missing mandatory parameters: Identity" in exo_reason(api.exo("Disable-TransportRule"))
    assert NOT_FOUND in exo_reason(api.exo("Disable-TransportRule", Identity="Nope"))


# --------------------------------------------------------------------------- mailboxes and forwarding


def test_get_mailbox_by_upn_alias_or_address(api: Api) -> None:
    for identity in ("ceo@contoso.com", "CEO", "smtp:Ceo@Contoso.com"):
        mailbox = value(api.exo("Get-Mailbox", Identity=identity))
        assert len(mailbox) == 1, identity
    ceo = mailbox[0]
    assert ceo["UserPrincipalName"] == "ceo@contoso.com" and ceo["PrimarySmtpAddress"] == "ceo@contoso.com"
    assert ceo["ForwardingSmtpAddress"] == "smtp:ceo.archive@outlook-mail.net" and ceo["ForwardingAddress"] is None
    assert ceo["DeliverToMailboxAndForward"] is True and ceo["DisplayName"] == "Chief Executive"
    assert ceo["ExternalDirectoryObjectId"] == "4c9b2e50-0000-4000-8000-000000000005"
    assert "inbox_rules" not in ceo and "permissions" not in ceo  # not Get-Mailbox properties
    assert [m["Alias"] for m in value(api.exo("Get-Mailbox"))] == ["ceo", "exadmin"]
    assert NOT_FOUND in exo_reason(api.exo("Get-Mailbox", Identity="cfo@contoso.com"))


def test_set_mailbox_clears_forwarding(api: Api) -> None:
    cleared = api.exo("Set-Mailbox", Identity="ceo@contoso.com", ForwardingSmtpAddress=None, ForwardingAddress=None,
                      DeliverToMailboxAndForward=False)
    assert value(cleared) == [] and cleared.json()["@adminapi.warnings"] == []
    ceo = value(api.exo("Get-Mailbox", Identity="ceo"))[0]
    assert (ceo["ForwardingSmtpAddress"], ceo["ForwardingAddress"], ceo["DeliverToMailboxAndForward"]) == (None, None, False)
    state = api.state()
    assert state["audit_log"][-1]["Operation"] == "Set-Mailbox"
    assert {"Name": "ForwardingSmtpAddress", "Value": ""} in state["audit_log"][-1]["AuditData"]["Parameters"]
    again = api.exo("Set-Mailbox", Identity="ceo@contoso.com", ForwardingSmtpAddress=None)
    assert "no settings of 'ceo@contoso.com' have been modified" in again.json()["@adminapi.warnings"][0]


def test_set_mailbox_binds_like_exchange(api: Api) -> None:
    api.exo("Set-Mailbox", Identity="exadmin", ForwardingSmtpAddress="Archive@Contoso.com", ForwardingAddress="ceo")
    exadmin = mailbox_state(api, "exadmin@contoso.com")
    assert exadmin["ForwardingSmtpAddress"] == "smtp:Archive@Contoso.com" and exadmin["ForwardingAddress"] == "ceo"
    not_smtp = api.exo("Set-Mailbox", Identity="exadmin", ForwardingSmtpAddress="somewhere")
    assert not_smtp.status_code == 400 and "ProxyAddress" in exo_reason(not_smtp)
    assert NOT_FOUND in exo_reason(api.exo("Set-Mailbox", Identity="exadmin", ForwardingAddress="nobody@contoso.com"))
    assert "System.Boolean" in exo_reason(api.exo("Set-Mailbox", Identity="exadmin", DeliverToMailboxAndForward="no"))
    unknown = api.exo("Set-Mailbox", Identity="exadmin", HiddenFromAddressListsEnabled=True)
    assert "parameter name 'HiddenFromAddressListsEnabled'" in exo_reason(unknown)


# --------------------------------------------------------------------------- inbox rules


def test_get_and_disable_inbox_rules(api: Api) -> None:
    rules = value(api.exo("Get-InboxRule", Mailbox="ceo@contoso.com"))
    assert [(r["Name"], r["Identity"], r["Enabled"]) for r in rules] == [
        ("Sync", "ceo@contoso.com\\Sync", True), ("Newsletters", "ceo@contoso.com\\Newsletters", True)]
    assert rules[0]["ForwardTo"] == ["ceo.archive@outlook-mail.net"] and rules[1]["ForwardTo"] == []
    one = value(api.exo("Get-InboxRule", Mailbox="ceo", Identity="sync"))
    assert one == value(api.exo("Get-InboxRule", Identity="ceo@contoso.com\\Sync")) == rules[:1]
    assert value(api.exo("Disable-InboxRule", Identity="ceo@contoso.com\\Sync", Confirm=False)) == []
    assert [r["Enabled"] for r in mailbox_state(api)["inbox_rules"]] == [False, True]
    record = api.state()["audit_log"][-1]
    assert (record["Operation"], record["AuditData"]["ObjectId"]) == ("Disable-InboxRule", "ceo@contoso.com\\Sync")
    assert NOT_FOUND in exo_reason(api.exo("Disable-InboxRule", Identity="ceo@contoso.com\\Gone"))
    assert NOT_FOUND in exo_reason(api.exo("Get-InboxRule", Mailbox="cfo@contoso.com"))
    own_mailbox = api.exo("Get-InboxRule")  # an application has no mailbox of its own
    assert NOT_FOUND in exo_reason(own_mailbox) and "'quell-emulator'" in exo_reason(own_mailbox)


# --------------------------------------------------------------------------- mailbox permissions


def test_get_and_remove_mailbox_permissions(api: Api) -> None:
    grants = value(api.exo("Get-MailboxPermission", Identity="ceo@contoso.com"))
    assert [(g["User"], g["AccessRights"], g["IsInherited"], g["Deny"]) for g in grants] == [
        ("helpdesk.op@contoso.com", ["FullAccess", "ReadPermission"], False, False),
        ("exadmin@contoso.com", ["ReadPermission"], False, False)]
    assert len(value(api.exo("Get-MailboxPermission", Identity="ceo", User="HELPDESK.op@contoso.com"))) == 1
    removed = api.exo("Remove-MailboxPermission", Identity="ceo@contoso.com", User="helpdesk.op@contoso.com",
                      AccessRights=["FullAccess"], Confirm=False)
    assert value(removed) == [] and removed.json()["@adminapi.warnings"] == []
    assert mailbox_state(api)["permissions"][0]["AccessRights"] == ["ReadPermission"]  # what is left
    api.exo("Remove-MailboxPermission", Identity="ceo", User="helpdesk.op@contoso.com", AccessRights="readpermission")
    assert [p["User"] for p in mailbox_state(api)["permissions"]] == ["exadmin@contoso.com"]  # none left: gone
    again = api.exo("Remove-MailboxPermission", Identity="ceo", User="helpdesk.op@contoso.com", AccessRights="FullAccess")
    assert "doesn't exist on the object" in again.json()["@adminapi.warnings"][0]
    assert api.state()["audit_log"][-1]["Operation"] == "Remove-MailboxPermission"
    bad_right = api.exo("Remove-MailboxPermission", Identity="ceo", User="exadmin@contoso.com", AccessRights="Everything")
    assert bad_right.status_code == 400 and "MailboxRights" in exo_reason(bad_right)
    assert "missing mandatory parameters: User AccessRights" in exo_reason(
        api.exo("Remove-MailboxPermission", Identity="ceo"))
    assert NOT_FOUND in exo_reason(api.exo("Get-MailboxPermission", Identity="cfo@contoso.com"))


# --------------------------------------------------------------------------- directory roles


def test_list_and_delete_role_assignments(api: Api) -> None:
    listed = api.graph("GET", "/roleManagement/directory/roleAssignments",
                       params={"$filter": f"principalId eq '{SVC_SYNC}'", "$expand": "roleDefinition"})
    assignments = {a["roleDefinition"]["displayName"]: a["id"] for a in listed.json()["value"]}
    assert set(assignments) == {"Exchange Administrator", "Global Reader"}
    deleted = api.graph("DELETE", f"/roleManagement/directory/roleAssignments/{assignments['Exchange Administrator']}")
    assert deleted.status_code == 204 and deleted.content == b""
    after = api.graph("GET", "/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{SVC_SYNC}'"})
    assert [a["id"] for a in after.json()["value"]] == [assignments["Global Reader"]]
    svc = next(u for u in api.state()["tenant"]["users"] if u["id"] == SVC_SYNC)
    assert svc["roles"] == ["Global Reader"]
    again = api.graph("DELETE", f"/roleManagement/directory/roleAssignments/{assignments['Exchange Administrator']}")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "Request_ResourceNotFound" and again.json()["error"]["innerError"]


# --------------------------------------------------------------------------- faults on every new call


@with_faults(*({"api": api, "status": 503, "times": 1} for api in (
    "exo:Get-TransportRule", "exo:Disable-TransportRule", "exo:Get-Mailbox", "exo:Set-Mailbox", "exo:Get-InboxRule",
    "exo:Disable-InboxRule", "exo:Get-MailboxPermission", "exo:Remove-MailboxPermission",
    "graph:GET /roleManagement/directory/roleAssignments", "graph:DELETE /roleManagement/directory/roleAssignments/{id}",
)))
def test_every_new_call_can_be_faulted(api: Api) -> None:
    calls = [
        lambda: api.exo("Get-TransportRule"),
        lambda: api.exo("Disable-TransportRule", Identity="Disclaimer"),
        lambda: api.exo("Get-Mailbox", Identity="ceo"),
        lambda: api.exo("Set-Mailbox", Identity="ceo", ForwardingSmtpAddress=None),
        lambda: api.exo("Get-InboxRule", Mailbox="ceo"),
        lambda: api.exo("Disable-InboxRule", Identity="ceo\\Sync"),
        lambda: api.exo("Get-MailboxPermission", Identity="ceo"),
        lambda: api.exo("Remove-MailboxPermission", Identity="ceo", User="exadmin@contoso.com", AccessRights="ReadPermission"),
        lambda: api.graph("GET", "/roleManagement/directory/roleAssignments"),
    ]
    for call in calls:
        assert [call().status_code for _ in range(2)] == [503, 200]
    assignment = api.graph("GET", "/roleManagement/directory/roleAssignments").json()["value"][0]["id"]
    path = f"/roleManagement/directory/roleAssignments/{assignment}"
    assert [api.graph("DELETE", path).status_code for _ in range(2)] == [503, 204]
    assert [c["status"] for c in api.handle.state.calls_matching("exo:Remove-MailboxPermission")] == [503, 200]


@with_faults({"api": "exo:Set-Mailbox", "effect": "ignore"})
def test_an_ignored_forwarding_clear_changes_nothing(api: Api) -> None:
    assert api.exo("Set-Mailbox", Identity="ceo", ForwardingSmtpAddress=None).status_code == 200
    assert mailbox_state(api)["ForwardingSmtpAddress"] == "smtp:ceo.archive@outlook-mail.net"


# --------------------------------------------------------------------------- audit sources


NEW_OPERATIONS = ["New-TransportRule", "Set-Mailbox", "New-InboxRule", "Add-MailboxPermission", "Add member to role.",
                  "New-AcceptedDomain", "Remove-InboundConnector"]


def window() -> dict[str, str]:
    now = datetime.now(timezone.utc)
    return {"filterStartDateTime": (now - timedelta(days=8)).isoformat(), "filterEndDateTime": now.isoformat()}


def test_one_graph_audit_query_fetches_every_new_record(api: Api) -> None:
    created = api.graph("POST", "/security/auditLog/queries", json={
        "displayName": "case", **window(), "operationFilters": NEW_OPERATIONS,
        "userPrincipalNameFilters": ["HELPDESK.OP@contoso.com", "nobody@contoso.com"]}).json()
    assert created["recordCountLimit"] == 1_000_000 and created["approximateReturnedRecordCount"] is None
    query = api.graph("GET", f"/security/auditLog/queries/{created['id']}").json()
    assert query["status"] == "succeeded" and query["approximateReturnedRecordCount"] == 7
    assert query["isRecordCountLimitExceeded"] is False
    records = api.graph("GET", f"/security/auditLog/queries/{created['id']}/records").json()["value"]
    assert [r["operation"] for r in records] == NEW_OPERATIONS
    role = records[4]
    assert (role["service"], role["auditLogRecordType"], role["objectId"]) == (
        "AzureActiveDirectory", "azureActiveDirectory", "svc-sync@contoso.com")
    assert role["auditData"]["@odata.type"] == "#microsoft.graph.security.azureActiveDirectoryAuditRecord"
    assert role["auditData"]["ModifiedProperties"][0] == {
        "Name": "Role.DisplayName", "NewValue": "\"Exchange Administrator\"", "OldValue": ""}
    assert records[5]["auditData"]["ResultStatus"] == "False"  # a failed record says so
    assert records[0]["service"] == "Exchange"
    only_admin = api.graph("POST", "/security/auditLog/queries", json={
        **window(), "operationFilters": NEW_OPERATIONS, "userPrincipalNameFilters": ["exadmin@contoso.com"]}).json()
    api.graph("GET", f"/security/auditLog/queries/{only_admin['id']}")
    assert api.graph("GET", f"/security/auditLog/queries/{only_admin['id']}/records").json()["value"] == []


def test_search_unified_audit_log_returns_the_new_records(api: Api) -> None:
    now = datetime.now(timezone.utc)
    records = value(api.exo("Search-UnifiedAuditLog", StartDate=(now - timedelta(days=8)).isoformat(),
                            EndDate=now.isoformat(), Operations=NEW_OPERATIONS, UserIds="helpdesk.op@contoso.com",
                            ResultSize=5000))
    assert [r["Operations"] for r in records] == NEW_OPERATIONS[::-1]  # newest first
    data = {r["Operations"]: json.loads(r["AuditData"]) for r in records}
    assert data["New-AcceptedDomain"]["ResultStatus"] == "False" and data["Set-Mailbox"]["ResultStatus"] == "True"
    role = data["Add member to role."]
    assert (role["Workload"], role["RecordType"], role["ResultStatus"]) == ("AzureActiveDirectory", 8, "Success")
    assert role["ModifiedProperties"][0]["Name"] == "Role.DisplayName"
    assert data["New-InboxRule"]["Parameters"][0] == {"Name": "Mailbox", "Value": "ceo@contoso.com"}


def test_new_records_are_cloud_app_events(api: Api) -> None:
    api.exo("Disable-TransportRule", Identity="Copy finance mail")  # the responder's own record joins them
    rows = api.graph("POST", "/security/runHuntingQuery", json={"Query": (
        "CloudAppEvents | where ActionType in ('New-TransportRule', 'Add member to role.', 'New-AcceptedDomain', "
        "'Disable-TransportRule') | project ActionType, AccountObjectId, Status = tostring(RawEventData.ResultStatus), "
        "Object = tostring(RawEventData.ObjectId) | order by ActionType asc")}).json()["results"]
    assert [(r["ActionType"], r["Status"], r["Object"]) for r in rows] == [
        ("Add member to role.", "Success", "svc-sync@contoso.com"),
        ("Disable-TransportRule", "True", "Copy finance mail"),
        ("New-AcceptedDomain", "False", "contoso-payments.com"),
        ("New-TransportRule", "True", "Copy finance mail")]
    assert rows[0]["AccountObjectId"] == "2a7d5b20-0000-4000-8000-000000000002"


def test_audit_log_queries_keep_to_the_tenant_allocation(api: Api) -> None:
    created = [api.graph("POST", "/security/auditLog/queries", json=window()) for _ in range(50)]
    assert {c.status_code for c in created} == {201}
    throttled = api.graph("POST", "/security/auditLog/queries", json=window())  # 50 have not finished
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "TooManyRequests"
    for query in created:
        api.graph("GET", f"/security/auditLog/queries/{query.json()['id']}")
    for _ in range(150):
        query = api.graph("POST", "/security/auditLog/queries", json=window())
        assert query.status_code == 201
        api.graph("GET", f"/security/auditLog/queries/{query.json()['id']}")
    assert api.graph("POST", "/security/auditLog/queries", json=window()).status_code == 429  # 200 in 24 hours


# --------------------------------------------------------------------------- the tenant after the case


def test_state_snapshot_shows_the_new_sections_after_the_changes(api: Api) -> None:
    tenant = api.state()["tenant"]
    assert set(tenant) >= {"transport_rules", "mailboxes", "users", "inbound_connectors", "outbound_connectors",
                           "blocked_connectors", "blocked_senders", "conditional_access_policies"}
    assert tenant["outbound_connectors"] == [] and tenant["blocked_connectors"] == []  # present, empty
    assert mailbox_state(api, "exadmin@contoso.com")["inbox_rules"] == []
    assert mailbox_state(api, "exadmin@contoso.com")["permissions"] == []
    api.exo("Disable-TransportRule", Identity="Copy finance mail")
    api.exo("Set-Mailbox", Identity="ceo", ForwardingSmtpAddress=None, ForwardingAddress=None,
            DeliverToMailboxAndForward=False)
    api.exo("Disable-InboxRule", Identity="ceo@contoso.com\\Sync")
    api.exo("Remove-MailboxPermission", Identity="ceo", User="helpdesk.op@contoso.com", AccessRights="FullAccess")
    ceo_roles = api.graph("GET", "/roleManagement/directory/roleAssignments",
                          params={"$filter": f"principalId eq '{SVC_SYNC}'", "$expand": "roleDefinition"}).json()["value"]
    exchange = next(a for a in ceo_roles if a["roleDefinition"]["displayName"] == "Exchange Administrator")
    api.graph("DELETE", f"/roleManagement/directory/roleAssignments/{exchange['id']}")
    tenant = api.state()["tenant"]
    assert tenant["transport_rules"][0]["State"] == "Disabled"
    ceo = mailbox_state(api)
    assert (ceo["ForwardingSmtpAddress"], ceo["ForwardingAddress"], ceo["DeliverToMailboxAndForward"]) == (None, None, False)
    assert [(r["Name"], r["Enabled"]) for r in ceo["inbox_rules"]] == [("Sync", False), ("Newsletters", True)]
    assert [(p["User"], p["AccessRights"]) for p in ceo["permissions"]] == [
        ("helpdesk.op@contoso.com", ["ReadPermission"]), ("exadmin@contoso.com", ["ReadPermission"])]
    assert next(u for u in tenant["users"] if u["id"] == SVC_SYNC)["roles"] == ["Global Reader"]
