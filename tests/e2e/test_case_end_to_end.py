"""One real case: intake over HTTP → Temporal dev server → worker → emulator → approvals → report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from emulator.scenario import load_scenario
from workers import cases
from workers.scenarios import RunOptions, tenant_stack
from tests.conftest import PROJECT_SCENARIOS

TOKENS = {"defender": "tok-defender", "soc1@contoso.com": "tok-soc1", "soc2@contoso.com": "tok-soc2"}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


@pytest.fixture
async def stack(client, cert_dir) -> AsyncIterator:
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    async with tenant_stack(client, scenario, RunOptions(approval_timeout=120), TOKENS, cert_dir) as s:
        yield s


@pytest.fixture
async def intake(stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stack.intake)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


async def wait_for_pending(intake: httpx.AsyncClient, case: str) -> list[dict]:
    async with asyncio.timeout(60):
        while True:
            summary = (await intake.get(f"/v1/cases/{case}", headers=bearer("soc1@contoso.com"))).json()
            if summary["pending"]:
                return summary["pending"]
            await asyncio.sleep(0.1)


async def test_true_positive_case_runs_to_a_reverted_connector(client, stack, intake):
    scenario = stack.scenario
    posted = await intake.post(
        "/v1/alerts", params={"tenant": scenario.tenant.id}, json=scenario.alert, headers=bearer("defender")
    )
    assert posted.status_code == 202, posted.text
    case = posted.json()["accepted"][0]["case_id"]

    # A repeat of the same alert joins the running case.
    again = await intake.post(
        "/v1/alerts", params={"tenant": scenario.tenant.id}, json=scenario.alert, headers=bearer("defender")
    )
    assert again.json()["accepted"][0]["case_id"] == case

    pending = await wait_for_pending(intake, case)
    kinds = {p["kind"] for p in pending}
    assert "revert_connector_change" in kinds
    plan_hash = pending[0]["plan_hash"]

    # The alert source is no approver; a stale plan is refused; neither leaves the action decided.
    refused = await intake.post(
        f"/v1/cases/{case}/approvals",
        json={"action_id": pending[0]["action_id"], "plan_hash": plan_hash},
        headers=bearer("defender"),
    )
    assert refused.status_code == 409 and "not an authorised approver" in refused.json()["detail"]
    stale = await intake.post(
        f"/v1/cases/{case}/approvals",
        json={"action_id": pending[0]["action_id"], "plan_hash": "000000000000"},
        headers=bearer("soc1@contoso.com"),
    )
    assert stale.status_code == 409 and "not the current plan" in stale.json()["detail"]
    unauthenticated = await intake.post(f"/v1/cases/{case}/approvals", json={})
    assert unauthenticated.status_code == 401

    for p in pending:
        approved = await intake.post(
            f"/v1/cases/{case}/approvals",
            json={"action_id": p["action_id"], "plan_hash": plan_hash},
            headers=bearer("soc1@contoso.com"),
        )
        assert approved.status_code == 200, approved.text
        if p["policy"] == "two_person":
            second = await intake.post(
                f"/v1/cases/{case}/approvals",
                json={"action_id": p["action_id"], "plan_hash": plan_hash},
                headers=bearer("soc2@contoso.com"),
            )
            assert second.status_code == 200, second.text

    async with asyncio.timeout(60):
        result = await cases.handle(client, case).result()
    assert result.verdict == "true_positive"
    assert result.case_status == "completed"
    executed = {(r.action.kind, r.action.target): r for r in result.actions}
    revert = executed[("revert_connector_change", "Contoso Hybrid")]
    assert revert.status == "done" and revert.verified and revert.approved_by == ["soc1@contoso.com"]

    state = stack.emulator_state()
    hybrid = next(c for c in state["tenant"]["inbound_connectors"] if c["Name"] == "Contoso Hybrid")
    assert hybrid["SenderIPAddresses"] == ["203.0.113.5"]
    assert state["tenant"]["blocked_connectors"] == []
    assert state["alerts"][scenario.alert["id"]]["classification"] == "truePositive"

    report = await intake.get(f"/v1/cases/{case}/report", headers=bearer("soc1@contoso.com"))
    assert report.status_code == 200 and report.json()["verdict"] == "true_positive"


async def test_intake_refuses_malformed_and_unknown_tenant_alerts(stack, intake):
    bad_json = await intake.post("/v1/alerts", content=b"{not json", headers=bearer("defender"))
    assert bad_json.status_code == 400
    unknown = await intake.post(
        "/v1/alerts", params={"tenant": "99999999-0000-0000-0000-000000000000"},
        json=stack.scenario.alert, headers=bearer("defender"),
    )
    assert unknown.status_code == 422 and "not configured" in unknown.json()["detail"]
    assert "qx-mailer" not in unknown.text  # the payload is never echoed back
    forged = await intake.post("/v1/alerts", json=stack.scenario.alert, headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401
