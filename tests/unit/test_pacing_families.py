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


def test_a_json_batch_counts_each_of_its_requests():
    requests = [{"id": str(i), "method": "GET", "url": f"/security/alerts_v2/a{i}"} for i in range(20)]
    assert batched_requests(httpx.Request("POST", f"{GRAPH}/$batch", json={"requests": requests})) == 20
    assert batched_requests(httpx.Request("POST", f"{GRAPH}/$batch", content=b"not json")) == 1
    assert batched_requests(httpx.Request("GET", f"{GRAPH}/users")) == 1
