"""Graph: alerts, users, directory roles, conditional access, audit log queries, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from emu_client import Api

ALERT = "da637f1e2c3b4a5d6e7f80910"
HELPDESK = "2a7d5b20-0000-4000-8000-000000000002"


def test_alert_read_update_and_comment(api: Api) -> None:
    alert = api.graph("GET", f"/security/alerts_v2/{ALERT}").json()
    assert alert["title"] == "Suspicious connector activity" and alert["classification"] == "unknown"
    assert alert["evidence"][0]["ipAddress"] == "198.51.100.23"
    updated = api.graph("PATCH", f"/security/alerts_v2/{ALERT}",
                        json={"classification": "truePositive", "determination": "compromisedAccount", "status": "resolved"})
    assert updated.status_code == 200 and updated.json()["status"] == "resolved"
    comment = {"@odata.type": "microsoft.graph.security.alertComment", "comment": "Reverted by quell."}
    comments = api.graph("POST", f"/security/alerts_v2/{ALERT}/comments", json=comment).json()
    assert comments["@odata.context"].endswith("#Collection(microsoft.graph.security.alertComment)")
    assert comments["value"][-1]["comment"] == "Reverted by quell." and comments["value"][-1]["createdDateTime"]
    stored = api.state()["alerts"][ALERT]
    assert stored["classification"] == "truePositive" and stored["comments"][-1]["comment"] == "Reverted by quell."
    assert api.graph("PATCH", f"/security/alerts_v2/{ALERT}", json={"status": "closed"}).status_code == 400
    assert api.graph("PATCH", f"/security/alerts_v2/{ALERT}", json={"title": "x"}).status_code == 400
    missing = api.graph("GET", "/security/alerts_v2/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] and missing.json()["error"]["innerError"]


def test_alert_list_filters(api: Api) -> None:
    since = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = api.graph("GET", "/security/alerts_v2", params={
        "$filter": f"createdDateTime ge {since} and serviceSource eq 'microsoftDefenderForOffice365'", "$top": "10"})
    assert [a["id"] for a in found.json()["value"]] == [ALERT]
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert api.graph("GET", "/security/alerts_v2", params={"$filter": f"createdDateTime gt {later}"}).json()["value"] == []
    assert api.graph("GET", "/security/alerts_v2", params={"$filter": "contains(title,'x')"}).status_code == 400


def test_alert_list_pages_oldest_first_with_a_skiptoken(api: Api, emulator) -> None:
    alerts = emulator.state.data.alerts
    start = datetime.fromisoformat(alerts[ALERT]["createdDateTime"]) + timedelta(minutes=1)
    for n in range(5):  # two share a createdDateTime across the first page boundary
        created = (start + timedelta(seconds=min(n, 2))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        alerts[f"page-{n}"] = {**alerts[ALERT], "id": f"page-{n}", "createdDateTime": created}
    query = {"$filter": f"createdDateTime ge {start.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}",
             "$orderby": "createdDateTime asc", "$top": "2"}
    pages, body = [], api.graph("GET", "/security/alerts_v2", params=query).json()
    while True:
        pages.append([a["id"] for a in body["value"]])
        if "@odata.nextLink" not in body:
            break
        assert "$skiptoken=" in body["@odata.nextLink"] and "$top=2" in body["@odata.nextLink"]
        body = api.http.get(body["@odata.nextLink"], headers={"Authorization": f"Bearer {api.graph_token}"}).json()
    assert pages == [["page-0", "page-1"], ["page-2", "page-3"], ["page-4"]]
    newest_first = api.graph("GET", "/security/alerts_v2", params={"$top": "1"}).json()
    assert [a["id"] for a in newest_first["value"]] == ["page-4"] and "@odata.nextLink" in newest_first
    for bad in ({"$orderby": "title"}, {"$top": "0"}, {"$skiptoken": "nonsense"}):
        assert api.graph("GET", "/security/alerts_v2", params=bad).status_code == 400


def test_password_reset_and_session_revocation(api: Api) -> None:
    weak = api.graph("PATCH", f"/users/{HELPDESK}", json={"passwordProfile": {"password": "short"}})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "Request_BadRequest"
    reset = api.graph("PATCH", "/users/HelpDesk.Op@contoso.com", json={
        "passwordProfile": {"password": "S3cure!Temp-Pass-91", "forceChangePasswordNextSignIn": True}})
    assert reset.status_code == 204
    revoked = api.graph("POST", f"/users/{HELPDESK}/revokeSignInSessions")
    assert revoked.json()["value"] is True
    user = api.graph("GET", f"/users/{HELPDESK}",
                     params={"$select": "id,accountEnabled,lastPasswordChangeDateTime,signInSessionsValidFromDateTime"}).json()
    assert user["accountEnabled"] is True and user["lastPasswordChangeDateTime"] and user["signInSessionsValidFromDateTime"]
    assert "displayName" not in user  # $select is honoured
    state = api.state()
    assert "S3cure!Temp-Pass-91" not in str(state) and "sha256$" not in str(state)
    helpdesk = next(u for u in state["tenant"]["users"] if u["id"] == HELPDESK)
    assert helpdesk["passwordProfile"] == {"forceChangePasswordNextSignIn": True, "forceChangePasswordNextSignInWithMfa": False}
    assert api.handle.state.data.password_hashes[HELPDESK].startswith("sha256$")
    assert len(api.handle.state.calls_matching("graph:POST /users/{id}/revokeSignInSessions")) == 1
    disabled = api.graph("PATCH", f"/users/{HELPDESK}", json={"accountEnabled": "no"})
    assert disabled.status_code == 400
    assert api.graph("GET", "/users/nobody@contoso.com").json()["error"]["code"] == "Request_ResourceNotFound"


def test_directory_roles_use_real_template_ids(api: Api) -> None:
    assignments = api.graph("GET", "/roleManagement/directory/roleAssignments",
                            params={"$filter": f"principalId eq '{HELPDESK}'", "$expand": "roleDefinition"}).json()["value"]
    assert len(assignments) == 1
    role = assignments[0]["roleDefinition"]
    assert role["displayName"] == "Exchange Administrator"
    assert role["templateId"] == "29232cdf-9323-42fd-ade2-1d097af3e4de" and role["isBuiltIn"] is True
    definitions = api.graph("GET", "/roleManagement/directory/roleDefinitions",
                            params={"$filter": "displayName eq 'Global Administrator'"}).json()["value"]
    assert [d["templateId"] for d in definitions] == ["62e90394-69f5-4237-9190-012177145e10"]


def test_conditional_access_policies(api: Api) -> None:
    assert api.graph("GET", "/identity/conditionalAccess/policies").json()["value"] == []
    policy = {
        "displayName": "Require MFA for admins", "state": "enabledForReportingButNotEnforced",
        "conditions": {"users": {"includeRoles": ["29232cdf-9323-42fd-ade2-1d097af3e4de"]},
                       "applications": {"includeApplications": ["All"]}},
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
    }
    created = api.graph("POST", "/identity/conditionalAccess/policies", json=policy)
    assert created.status_code == 201 and created.json()["id"]
    assert api.state()["tenant"]["conditional_access_policies"][0]["state"] == "enabledForReportingButNotEnforced"
    assert api.graph("POST", "/identity/conditionalAccess/policies", json={"displayName": "x"}).status_code == 400


def test_audit_log_query_lifecycle(api: Api) -> None:
    now = datetime.now(timezone.utc)
    created = api.graph("POST", "/security/auditLog/queries", json={
        "@odata.type": "#microsoft.graph.security.auditLogQuery", "displayName": "connector changes",
        "filterStartDateTime": (now - timedelta(days=8)).isoformat(), "filterEndDateTime": now.isoformat(),
        "operationFilters": ["set-inboundconnector"]})
    assert created.status_code == 201 and created.json()["status"] == "notStarted"
    query_id = created.json()["id"]
    assert api.graph("GET", f"/security/auditLog/queries/{query_id}").json()["status"] == "succeeded"
    records = api.graph("GET", f"/security/auditLog/queries/{query_id}/records").json()["value"]
    assert [r["userPrincipalName"] for r in records] == ["exadmin@contoso.com", "helpdesk.op@contoso.com"]
    assert records[1]["auditData"]["Parameters"][1]["Value"] == "198.51.100.23"
    assert records[1]["auditLogRecordType"] == "exchangeAdmin" and records[1]["operation"] == "Set-InboundConnector"


def test_unknown_routes_answer_in_graph_shape(api: Api) -> None:
    response = api.graph("GET", "/security/incidents")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "innerError"}


def batch(api: Api, *requests: dict, token: str | None = None):
    headers = {"Authorization": f"Bearer {token or api.graph_token}"}
    return api.http.post("/v1.0/$batch", json={"requests": list(requests)}, headers=headers)


def alert_request(key: str, alert_id: str = ALERT, **more) -> dict:
    return {"id": key, "method": "GET", "url": f"/security/alerts_v2/{alert_id}", **more}


def test_a_json_batch_answers_each_request_as_if_it_came_on_its_own(api: Api) -> None:
    answer = batch(
        api,
        alert_request("1"),
        {"id": "2", "method": "PATCH", "url": f"/security/alerts_v2/{ALERT}",
         "headers": {"Content-Type": "application/json"}, "body": {"status": "resolved"}},
        alert_request("3", "nope"),
        {"id": "4", "method": "GET", "url": f"/users/{HELPDESK}", "dependsOn": ["3"]},
        {"id": "5", "method": "GET", "url": f"/users/{HELPDESK}?$select=id,accountEnabled", "dependsOn": ["1"]},
    )
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["id"] == ALERT
    assert by_id["2"]["status"] == 200 and api.state()["alerts"][ALERT]["status"] == "resolved"
    assert by_id["3"]["status"] == 404 and by_id["3"]["body"]["error"]["code"]
    assert by_id["4"]["status"] == 424 and by_id["4"]["body"]["error"]["code"] == "FailedDependency"
    assert by_id["5"]["status"] == 200 and set(by_id["5"]["body"]) == {"@odata.context", "id", "accountEnabled"}
    logged = [(c["api"], c["status"]) for c in api.handle.state.calls]
    assert logged == [  # each request that ran is logged as a call of its own, then the batch
        (f"graph:GET /security/alerts_v2/{ALERT}", 200), (f"graph:PATCH /security/alerts_v2/{ALERT}", 200),
        ("graph:GET /security/alerts_v2/nope", 404), (f"graph:GET /users/{HELPDESK}", 200), ("graph:POST /$batch", 200),
    ]


@pytest.mark.parametrize("requests", [
    [],
    [alert_request(str(n)) for n in range(21)],  # at most 20
    [{"id": "1", "method": "GET"}],
    [alert_request("a"), alert_request("A")],  # ids are unique case-insensitively
    [{"id": "1", "method": "PATCH", "url": f"/security/alerts_v2/{ALERT}", "body": {"status": "resolved"}}],
    [{"id": "1", "method": "GET", "url": f"https://graph.microsoft.com/v1.0/security/alerts_v2/{ALERT}"}],
    [{"id": "1", "method": "POST", "url": "/$batch", "headers": {"Content-Type": "application/json"}, "body": {}}],
    [alert_request("1", dependsOn=["2"]), alert_request("2")],  # dependencies come earlier in the batch
])
def test_a_malformed_json_batch_is_refused_whole(api: Api, requests: list) -> None:
    before = api.state()["alerts"]
    answer = batch(api, *requests)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadRequest"
    assert [c["api"] for c in api.handle.state.calls] == ["graph:POST /$batch"]  # nothing in it ran
    assert api.state()["alerts"] == before


def test_a_json_batch_with_an_exchange_token_is_refused(api: Api) -> None:
    answer = batch(api, alert_request("1"), token=api.exo_token)
    assert answer.status_code == 401
    assert [c["api"] for c in api.handle.state.calls] == ["graph:POST /$batch"]
