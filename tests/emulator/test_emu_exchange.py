"""Exchange Online InvokeCommand: the cmdlets quell runs, their effects, and Exchange's refusals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from emu_client import Api, exo_reason

HYBRID_GUID = "9b0e4c50-0000-4000-8000-000000000010"


def value(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_get_connectors_by_name_or_guid_and_all(api: Api) -> None:
    by_name = value(api.exo("Get-InboundConnector", Identity="contoso hybrid"))
    by_guid = value(api.exo("Get-InboundConnector", Identity=HYBRID_GUID))
    assert by_name == by_guid and by_name[0]["Name"] == "Contoso Hybrid" and by_name[0]["Identity"] == "Contoso Hybrid"
    assert by_name[0]["SenderIPAddresses"] == ["198.51.100.23"] and by_name[0]["SenderDomains"] == ["smtp:*;1"]
    assert [c["Name"] for c in value(api.exo("Get-OutboundConnector"))] == ["Outbound to Fabrikam (TLS)"]


def test_set_inbound_connector_changes_it_logs_the_audit_record_and_the_call(api: Api) -> None:
    before = value(api.exo("Get-InboundConnector", Identity="Contoso Hybrid"))[0]
    answer = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses=["203.0.113.5"],
                     Comment="reverted by quell", Enabled=True)
    assert value(answer) == []
    after = value(api.exo("Get-InboundConnector", Identity="Contoso Hybrid"))[0]
    assert after["SenderIPAddresses"] == ["203.0.113.5"] and after["Comment"] == "reverted by quell"
    assert after["WhenChanged"] > before["WhenChanged"]
    state = api.state()
    record = state["audit_log"][-1]
    assert record["Operation"] == "Set-InboundConnector" and record["UserIds"] == "quell-emulator"
    assert {"Name": "SenderIPAddresses", "Value": "203.0.113.5"} in record["AuditData"]["Parameters"]
    assert [c["status"] for c in api.handle.state.calls_matching("exo:Set-InboundConnector")] == [200]
    assert state["tenant"]["inbound_connectors"][0]["SenderIPAddresses"] == ["203.0.113.5"]
    # The audit trail shows in advanced hunting too.
    hunt = api.graph("POST", "/security/runHuntingQuery",
                     json={"Query": "CloudAppEvents | where ActionType == 'Set-InboundConnector' | count"})
    assert hunt.json()["results"] == [{"Count": 3}]


def test_multi_valued_properties_take_strings_lists_and_add_remove(api: Api) -> None:
    api.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses="203.0.113.5, 203.0.113.6")
    api.exo("Set-InboundConnector", Identity="Contoso Hybrid",
            SenderIPAddresses={"Add": ["203.0.113.0/28"], "Remove": ["203.0.113.6"]})
    connector = value(api.exo("Get-InboundConnector", Identity="Contoso Hybrid"))[0]
    assert connector["SenderIPAddresses"] == ["203.0.113.5", "203.0.113.0/28"]
    unchanged = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", Enabled=True)
    assert "no settings of 'Contoso Hybrid' have been modified" in unchanged.json()["@adminapi.warnings"][0]


def test_exchange_refuses_what_it_would_refuse(api: Api) -> None:
    unknown_parameter = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", Foo="x")
    assert unknown_parameter.status_code == 400
    assert unknown_parameter.json()["error"]["message"] == "Error executing cmdlet"
    assert "A parameter cannot be found that matches parameter name 'Foo'." in exo_reason(unknown_parameter)
    unknown_cmdlet = api.exo("Get-Foo")
    assert "The term 'Get-Foo' is not recognized" in exo_reason(unknown_cmdlet)
    not_a_bool = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", Enabled="false")
    assert not_a_bool.status_code == 400 and "System.Boolean" in exo_reason(not_a_bool)
    not_a_list = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses=5)
    assert not_a_list.status_code == 400 and "SenderIPAddresses" in exo_reason(not_a_list)
    not_an_ip = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses=["mail.example"])
    assert not_an_ip.status_code == 400 and "IPRange" in exo_reason(not_an_ip)
    missing = api.exo("Set-InboundConnector", Enabled=False)
    assert "missing mandatory parameters: Identity" in exo_reason(missing)
    nowhere = api.exo("Set-InboundConnector", Identity="Nowhere", Enabled=False)
    assert "ManagementObjectNotFoundException" in exo_reason(nowhere) and "'Nowhere'" in exo_reason(nowhere)
    bad_type = api.exo("Set-OutboundConnector", Identity="Outbound to Fabrikam (TLS)", ConnectorType="Hybrid")
    assert bad_type.status_code == 400
    # Nothing of that changed the tenant.
    assert api.state()["tenant"]["inbound_connectors"][0]["Enabled"] is True


def test_new_and_remove_connectors(api: Api) -> None:
    created = value(api.exo("New-InboundConnector", Name="Rogue", SenderDomains=["*"], ConnectorType="OnPremises",
                            SenderIPAddresses=["192.0.2.7"]))[0]
    assert created["Name"] == "Rogue" and created["ConnectorType"] == "OnPremises" and created["Guid"]
    duplicate = api.exo("New-InboundConnector", Name="rogue", SenderDomains=["*"])
    assert duplicate.status_code == 400 and "already exists" in exo_reason(duplicate)
    assert value(api.exo("Remove-InboundConnector", Identity=created["Guid"], Confirm=False)) == []
    assert [c["Name"] for c in api.state()["tenant"]["inbound_connectors"]] == ["Contoso Hybrid"]
    assert [r["Operation"] for r in api.state()["audit_log"][-2:]] == ["New-InboundConnector", "Remove-InboundConnector"]


def test_restricted_entities_and_accepted_domains(api: Api) -> None:
    assert [b["ConnectorName"] for b in value(api.exo("Get-BlockedConnector"))] == ["Contoso Hybrid"]
    needs_reason = api.exo("Remove-BlockedConnector", ConnectorId=HYBRID_GUID)
    assert "missing mandatory parameters: Reason" in exo_reason(needs_reason)
    assert value(api.exo("Remove-BlockedConnector", ConnectorId=HYBRID_GUID, Reason="reverted")) == []
    again = api.exo("Remove-BlockedConnector", ConnectorId=HYBRID_GUID, Reason="reverted")
    assert again.status_code == 400 and "ManagementObjectNotFoundException" in exo_reason(again)
    assert value(api.exo("Get-BlockedSenderAddress", SenderAddress="BILLING@contoso.com"))[0]["Reason"] == "Outbound spam"
    assert value(api.exo("Remove-BlockedSenderAddress", SenderAddress="Billing@Contoso.com")) == []
    tenant = api.state()["tenant"]
    assert tenant["blocked_connectors"] == [] and tenant["blocked_senders"] == []
    domains = value(api.exo("Get-AcceptedDomain"))
    assert [(d["DomainName"], d["Default"], d["InitialDomain"]) for d in domains] == [
        ("contoso.com", True, False), ("contoso.onmicrosoft.com", False, True)]


def test_search_unified_audit_log_answers_like_exchange(api: Api) -> None:
    now = datetime.now(timezone.utc)
    window = {"StartDate": (now - timedelta(days=8)).isoformat(), "EndDate": now.isoformat()}
    records = value(api.exo("Search-UnifiedAuditLog", Operations=["Set-InboundConnector"], ResultSize=5000, **window))
    assert [r["UserIds"] for r in records] == ["helpdesk.op@contoso.com", "exadmin@contoso.com"]  # newest first
    data = json.loads(records[0]["AuditData"])  # a JSON string, as Exchange sends it
    assert data["ObjectId"] == "Contoso Hybrid" and data["Operation"] == "Set-InboundConnector"
    assert data["Parameters"][1] == {"Name": "SenderIPAddresses", "Value": "198.51.100.23"}
    assert records[0]["Operations"] == "Set-InboundConnector" and records[0]["ResultCount"] == 2
    assert value(api.exo("Search-UnifiedAuditLog", Operations="New-InboundConnector", **window)) == []
    assert api.exo("Search-UnifiedAuditLog", StartDate="last week", EndDate=now.isoformat()).status_code == 400


def test_search_unified_audit_log_pages_a_session(api: Api) -> None:
    """The same command with a SessionId runs on through the session's records, then answers nothing."""
    now = datetime.now(timezone.utc)
    command = {"StartDate": (now - timedelta(days=8)).isoformat(), "EndDate": now.isoformat(),
               "Operations": ["Set-InboundConnector"], "SessionId": "s1", "SessionCommand": "ReturnLargeSet",
               "ResultSize": 1}
    pages = [value(api.exo("Search-UnifiedAuditLog", **command)) for _ in range(3)]
    assert [[(r["ResultIndex"], r["ResultCount"], r["UserIds"]) for r in page] for page in pages] == [
        [(1, 2, "helpdesk.op@contoso.com")], [(2, 2, "exadmin@contoso.com")], []]
    other = value(api.exo("Search-UnifiedAuditLog", **{**command, "SessionId": "s2", "ResultSize": 5000}))
    assert [r["ResultIndex"] for r in other] == [1, 2]  # a session of its own
    wrong = api.exo("Search-UnifiedAuditLog", **{**command, "SessionId": "s3", "SessionCommand": "ReturnAll"})
    assert wrong.status_code == 400 and "ReturnLargeSet" in exo_reason(wrong)


def test_message_trace_is_derived_from_email_events(api: Api) -> None:
    now = datetime.now(timezone.utc)
    spam = value(api.exo("Get-MessageTraceV2", StartDate=(now - timedelta(days=2)).isoformat(), EndDate=now.isoformat(),
                         SenderAddress="bounce-1@qx-mailer.example"))
    assert len(spam) == 1
    assert spam[0]["RecipientAddress"] == "victim1@target1.example" and spam[0]["FromIP"] == "198.51.100.23"
    assert spam[0]["Status"] == "FilteredAsSpam"  # DeliveryLocation "Junk folder"
    delivered = value(api.exo("Get-MessageTraceV2", SenderAddress=["bounce-2@qx-mailer.example"]))
    assert delivered[0]["Status"] == "Delivered" and delivered[0]["MessageTraceId"] == "spam-2"
    too_long = api.exo("Get-MessageTraceV2", StartDate=(now - timedelta(days=11)).isoformat(), EndDate=now.isoformat())
    assert too_long.status_code == 400 and "10 days" in exo_reason(too_long)
