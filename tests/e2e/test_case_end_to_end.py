"""One real case: intake over HTTP → Temporal dev server → worker → emulator → approvals → report."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from activities import cases
from activities.remediation import PASSWORD_LENGTH
from emulator.scenario import load_scenario
from workflows.report import report_markdown
from workers.scenarios import RunOptions, tenant_stack
from tests.conftest import PROJECT_SCENARIOS, eventually

TOKENS = {"defender": "tok-defender", "soc1@contoso.com": "tok-soc1", "soc2@contoso.com": "tok-soc2"}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


@pytest.fixture
async def stack(client, cert_dir) -> AsyncIterator:
    # A fresh alert id per test: intake treats an alert a closed case already absorbed as a late duplicate.
    text = (PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").read_text()
    scenario = load_scenario(text.replace("da637f1e2c3b4a5d6e7f80910", f"da637f1e2c3b4a5d6e7f80910-{uuid.uuid4().hex[:6]}"))
    async with tenant_stack(client, scenario, RunOptions(approval_timeout=120), TOKENS, cert_dir) as s:
        yield s


@pytest.fixture
async def intake(stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stack.intake)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


async def wait_for_pending(intake: httpx.AsyncClient, case: str) -> list[dict]:
    async def summary() -> dict:
        response = await intake.get(f"/v1/cases/{case}", headers=bearer("soc1@contoso.com"))
        assert response.status_code == 200, response.text
        return response.json()

    return (await eventually(summary, lambda s: bool(s["pending"]), timeout=60))["pending"]


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


def _texts(history_json: str) -> list[str]:
    """The history as text, with every payload's base64 data decoded as well."""
    texts = [history_json]

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    try:
                        texts.append(base64.b64decode(value).decode("utf-8", "replace"))
                    except ValueError:
                        pass
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(history_json))
    return texts


def contains_password(text: str, salted_hash: str) -> bool:
    """True when any window of the password's length hashes to the emulator's stored hash."""
    _, salt, digest = salted_hash.split("$")
    return any(
        hashlib.sha256((salt + text[i : i + PASSWORD_LENGTH]).encode()).hexdigest() == digest
        for i in range(len(text) - PASSWORD_LENGTH + 1)
    )


async def test_generated_password_is_nowhere_in_history_or_report(client, stack, intake):
    """The password the emulator received (kept only as a salted hash) appears in no history
    event, payload, report or case summary the responder produced."""
    scenario = stack.scenario
    posted = await intake.post(
        "/v1/alerts", params={"tenant": scenario.tenant.id}, json=scenario.alert, headers=bearer("defender")
    )
    case = posted.json()["accepted"][0]["case_id"]
    for p in await wait_for_pending(intake, case):
        for who in ["soc1@contoso.com", "soc2@contoso.com"][: p["still_needed"]]:
            await intake.post(f"/v1/cases/{case}/approvals",
                              json={"action_id": p["action_id"], "plan_hash": p["plan_hash"]}, headers=bearer(who))
    async with asyncio.timeout(60):
        report = await cases.handle(client, case).result()
    assert any(r.action.kind == "reset_admin_password" and r.status == "done" for r in report.actions)

    salted = stack.emulator.state.data.password_hashes["2a7d5b20-0000-4000-8000-000000000002"]
    probe = "Pr0be!" * 4  # the detector finds a known password inside text, so a miss means absence
    assert contains_password(f'{{"x": "{probe}"}}', f"sha256$s4lt${hashlib.sha256(('s4lt' + probe).encode()).hexdigest()}")
    history = (await cases.handle(client, case).fetch_history()).to_json()
    texts = _texts(history) + [report.model_dump_json(), report_markdown(report)]
    assert not any(contains_password(text, salted) for text in texts)
