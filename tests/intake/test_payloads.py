"""Intake edges that need no server: the Sentinel payload the runner builds, hostile nesting,
tenant mismatches, the poller's Graph filter and nextLink guard."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.alert_parsing import from_graph_alert, parse_alerts
from activities.alerts import alerts_filter
from activities.clients import GraphHttp
from activities.pacing import Pacer
from config.settings import IntakeSettings, SourceGrant
from workers.scenarios import sentinel_incident
from tests.intake.conftest import DEFENDER, TENANT, intake_without_temporal, scenario


@pytest.fixture
async def intake():
    granted = IntakeSettings(api_tokens={"defender": SecretStr("tok-defender")},
                             sources={"defender": SourceGrant(tenants=[TENANT])})
    async with intake_without_temporal(granted) as http:
        yield http


@pytest.mark.parametrize("name", ["tp-hijacked-hybrid-connector", "fp-scanner-relay-normal-traffic"])
def test_sentinel_incident_carries_what_the_graph_alert_carries(name):
    alert = scenario(name).alert
    [from_sentinel] = parse_alerts(sentinel_incident(alert), TENANT)
    from_graph = from_graph_alert(alert, TENANT, source="webhook")
    assert from_sentinel.source == "sentinel"
    keep = {"alert_id", "tenant_id", "ip_addresses", "messages", "severity", "created"}
    assert from_sentinel.model_dump(include=keep) == from_graph.model_dump(include=keep)


async def test_nesting_deep_enough_to_exhaust_the_parser_is_a_400(intake):
    body = b"[" * 200_000 + b"]" * 200_000
    response = await intake.post("/v1/alerts", content=body[:999_000], headers=DEFENDER)
    assert response.status_code in (400, 413)
    hostile = b"[" * 100_000
    response = await intake.post("/v1/alerts", content=hostile, headers=DEFENDER)
    assert response.status_code == 400


async def test_an_alert_naming_another_tenant_than_the_parameter_is_refused(intake):
    other = "99999999-0000-0000-0000-000000000000"
    body = {"tenant": other, "alert_id": "a-1", "ip": "198.51.100.23"}
    response = await intake.post("/v1/alerts", params={"tenant": TENANT}, content=json.dumps(body), headers=DEFENDER)
    assert response.status_code == 422 and "another tenant" in response.json()["detail"]


def test_poller_filter_is_server_side_by_source_and_time():
    after = datetime(2026, 11, 20, 9, 45, 0, 123456, tzinfo=timezone.utc)
    assert alerts_filter(after) == (
        "serviceSource eq 'microsoftDefenderForOffice365' and createdDateTime ge 2026-11-20T09:45:00.123456Z"
    )


async def test_a_next_link_to_another_host_never_gets_the_token():
    class NoToken:
        async def get_token(self, *scopes):
            raise AssertionError("a token was requested")

    graph = GraphHttp("https://graph.microsoft.com", NoToken(), Pacer("t", None))
    try:
        with pytest.raises(ApplicationError, match="outside"):
            await graph.request("GET", "https://graph.microsoft.com.evil.example/v1.0/security/alerts_v2")
    finally:
        await graph.aclose()
