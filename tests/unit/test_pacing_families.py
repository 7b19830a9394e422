"""Which quota family a tenant call draws on, and how many turns it takes (activities/pacing.py)."""

from __future__ import annotations

import httpx

from activities.pacing import batched_requests, family_of

GRAPH = "https://graph.microsoft.com/v1.0"
EXO = "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"


def cmdlet(name: str) -> httpx.Request:
    return httpx.Request("POST", EXO, json={"CmdletInput": {"CmdletName": name, "Parameters": {}}})


def test_message_trace_has_its_own_family_and_other_cmdlets_are_exchange():
    assert family_of(cmdlet("Get-MessageTraceV2")) == "message_trace"
    assert family_of(cmdlet("Get-MessageTraceDetailV2")) == "message_trace"
    assert family_of(cmdlet("Get-AcceptedDomain")) == "exchange"
    assert family_of(httpx.Request("POST", f"{GRAPH}/security/runHuntingQuery", json={"Query": "x"})) == "hunting"
    assert family_of(httpx.Request("GET", f"{GRAPH}/users/a@contoso.com")) == "graph"


def test_alerts_and_incidents_draw_on_the_security_limit_and_the_directory_does_not():
    assert family_of(httpx.Request("GET", f"{GRAPH}/security/alerts_v2/a1")) == "security"
    assert family_of(httpx.Request("PATCH", f"{GRAPH}/security/incidents/7", json={})) == "security"
    assert family_of(httpx.Request("GET", f"{GRAPH}/security/alerts_v2?$top=10")) == "security"
    assert family_of(httpx.Request("POST", f"{GRAPH}/security/auditLog/queries", json={})) == "graph"
    assert family_of(httpx.Request("GET", f"{GRAPH}/security/alerts_v2x")) == "graph"
    alerts = [{"id": str(i), "method": "GET", "url": f"/security/alerts_v2/a{i}"} for i in range(3)]
    users = [{"id": str(i), "method": "GET", "url": f"/users/u{i}"} for i in range(3)]
    assert family_of(httpx.Request("POST", f"{GRAPH}/$batch", json={"requests": alerts})) == "security"
    assert family_of(httpx.Request("POST", f"{GRAPH}/$batch", json={"requests": users})) == "graph"
    # A batch that mixes them is paced as the stricter family.
    assert family_of(httpx.Request("POST", f"{GRAPH}/$batch", json={"requests": users + alerts[:1]})) == "security"


def test_a_json_batch_counts_each_of_its_requests():
    requests = [{"id": str(i), "method": "GET", "url": f"/security/alerts_v2/a{i}"} for i in range(20)]
    assert batched_requests(httpx.Request("POST", f"{GRAPH}/$batch", json={"requests": requests})) == 20
    assert batched_requests(httpx.Request("POST", f"{GRAPH}/$batch", content=b"not json")) == 1
    assert batched_requests(httpx.Request("GET", f"{GRAPH}/users")) == 1
