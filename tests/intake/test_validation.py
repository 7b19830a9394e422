"""Intake refuses what is forged, replayed, oversize, malformed or not the caller's, before anything
reaches Temporal, and no refusal quotes the request back (its values, ids, tenants or key names)."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from config.settings import AnalystGrant, IntakeSettings, SourceGrant
from workers.intake_auth import sign
from workers.scenarios import sentinel_incident
from tests.intake.conftest import TENANT, graph_alert, intake_without_temporal

ALERT = {"tenant": TENANT, "alert_id": "a-1", "ip": "198.51.100.23"}
SOC1 = {"Authorization": "Bearer tok-soc1"}
DEFENDER = {"Authorization": "Bearer tok-1", "Content-Type": "application/json"}
PROBE = "zq-probe"
"""Every probe value below contains this; no answer may."""


@pytest.fixture
async def intake():
    limits = IntakeSettings(
        api_tokens={"defender": SecretStr("tok-1"), "soc1@contoso.com": SecretStr("tok-soc1")},
        hmac_secrets={"sentinel": SecretStr("hmac-secret")},
        sources={"defender": SourceGrant(tenants=[TENANT]), "sentinel": SourceGrant(tenants=[TENANT])},
        analysts={"soc1@contoso.com": AnalystGrant(tenants=[TENANT], approve=True)},
        max_body_bytes=2000,
    )
    async with intake_without_temporal(limits) as http:
        yield http


def signed(body: bytes, secret: str = "hmac-secret", at: int | None = None, source: str = "sentinel") -> dict:
    stamp = int(time.time()) if at is None else at
    return {"X-Quell-Source": source, "X-Quell-Timestamp": str(stamp), "X-Quell-Signature": sign(secret, stamp, body),
            "Content-Type": "application/json"}


async def test_valid_signed_alert_passes_auth_and_waits_for_temporal(intake):
    body = json.dumps(ALERT).encode()
    response = await intake.post("/v1/alerts", content=body, headers=signed(body))
    assert response.status_code == 503  # authenticated and valid; Temporal down → sender retries
    assert "retry" in response.json()["detail"]


async def test_forged_signature_is_refused(intake):
    body = json.dumps(ALERT).encode()
    response = await intake.post("/v1/alerts", content=body, headers=signed(body, secret="guess"))
    assert response.status_code == 401


async def test_signature_over_another_body_is_refused(intake):
    headers = signed(json.dumps(ALERT).encode())
    tampered = json.dumps({**ALERT, "ip": "203.0.113.5"}).encode()
    assert (await intake.post("/v1/alerts", content=tampered, headers=headers)).status_code == 401


async def test_a_delivery_that_got_503_is_not_remembered_so_its_verbatim_retry_is_not_a_replay(intake):
    body = json.dumps(ALERT).encode()
    headers = signed(body)
    assert (await intake.post("/v1/alerts", content=body, headers=headers)).status_code == 503
    assert (await intake.post("/v1/alerts", content=body, headers=headers)).status_code == 503


async def test_stale_and_far_future_timestamps_are_refused(intake):
    body = json.dumps(ALERT).encode()
    now = int(time.time())
    assert (await intake.post("/v1/alerts", content=body, headers=signed(body, at=now - 301))).status_code == 401
    assert (await intake.post("/v1/alerts", content=body, headers=signed(body, at=now + 90))).status_code == 401
    # Clock skew of a few seconds is fine.
    assert (await intake.post("/v1/alerts", content=body, headers=signed(body, at=now + 30))).status_code == 503


async def test_a_timestamp_of_non_ascii_digits_is_a_401(intake):
    body = json.dumps(ALERT).encode()
    for stamp in (b"\xb9", "١٧٠٠٠٠٠٠٠٠".encode()):  # "¹" (latin-1, as HTTP headers decode) and Arabic-Indic
        headers = {**signed(body), "X-Quell-Timestamp": stamp}
        response = await intake.post("/v1/alerts", content=body, headers=headers)
        assert response.status_code == 401 and response.json() == {"detail": "authentication required"}


async def test_unknown_source_is_indistinguishable_from_a_bad_signature_or_token(intake):
    body = json.dumps(ALERT).encode()
    answers = [
        await intake.post("/v1/alerts", content=body, headers=signed(body, source=f"{PROBE}-source")),
        await intake.post("/v1/alerts", content=body, headers=signed(body, secret="guess")),
        await intake.post("/v1/alerts", content=body, headers={"Authorization": f"Bearer {PROBE}-token"}),
        await intake.post("/v1/alerts", content=body),
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({(a.text, a.headers["www-authenticate"], a.headers["content-type"]) for a in answers}) == 1
    assert all(PROBE not in a.text for a in answers)


async def test_a_source_posts_only_for_its_tenants_and_an_analyst_posts_none(intake):
    other = "99999999-0000-0000-0000-000000000000"
    assert (await intake.post("/v1/alerts", json=ALERT, headers=SOC1)).status_code == 403
    # The tenant is not configured (so in no grant): refused without naming it.
    response = await intake.post("/v1/alerts", json={**ALERT, "tenant": other}, headers=DEFENDER)
    assert response.status_code == 422 and other not in response.text


async def test_a_source_reads_no_case_and_an_analyst_reads_only_its_tenants(intake):
    mine = f"connector-case/{TENANT}/ip/198.51.100.23"
    other = "connector-case/99999999-0000-0000-0000-000000000000/ip/198.51.100.23"
    assert (await intake.get(f"/v1/cases/{mine}", headers=DEFENDER)).status_code == 403
    assert (await intake.get(f"/v1/cases/{mine}/report", headers=DEFENDER)).status_code == 403
    assert (await intake.get(f"/v1/cases/{other}", headers=SOC1)).status_code == 403
    assert (await intake.get(f"/v1/cases/{mine}", headers=SOC1)).status_code == 503  # allowed; Temporal down
    approval = {"action_id": "a1", "plan_hash": "0123456789ab"}
    assert (await intake.post(f"/v1/cases/{mine}/approvals", json=approval, headers=DEFENDER)).status_code == 403
    assert (await intake.post(f"/v1/cases/{other}/approvals", json=approval, headers=SOC1)).status_code == 403


def _sentinel_with_numeric_sender_ip() -> dict:
    incident = sentinel_incident(graph_alert(f"{PROBE}-alert", "198.51.100.23"))
    incident["object"]["properties"]["relatedEntities"].append(
        {"kind": "MailMessage", "properties": {"networkMessageId": f"{PROBE}-msg", "senderIP": 3325256727}})
    return incident


def _record(category: object, tenant: object = TENANT, **properties: object) -> dict:
    return {"tenantId": tenant, "category": category, "properties": {"AlertId": f"{PROBE}-alert", **properties}}


@pytest.mark.parametrize(
    "body",
    [
        {"type": 1, PROBE: f"{PROBE}-value"},
        {"records": [_record(7, Title="Suspicious connector activity")]},
        {"records": [_record("AdvancedHunting-AlertInfo", {PROBE: f"{PROBE}-tenant"},
                             Title="Suspicious connector activity")]},
        {"records": [_record("AdvancedHunting-AlertInfo", None, Title="Suspicious connector activity"),
                     _record("AdvancedHunting-AlertEvidence", None, EntityType="Ip", RemoteIP="198.51.100.23")]},
        {"records": [_record("AdvancedHunting-AlertInfo", Title="Suspicious connector activity")]},
        _sentinel_with_numeric_sender_ip(),
        graph_alert(f"{PROBE}-alert", "198.51.100.23", tenantId={PROBE: f"{PROBE}-tenant"}),
        {**ALERT, "alert_id": f"{PROBE}-alert", f"{PROBE}-key": 1},
        {**ALERT, "alert_id": f"{PROBE}-alert", "tenant": f"{PROBE}-tenant"},
    ],
    ids=["numeric-type", "numeric-category", "object-tenantId", "no-tenant", "no-evidence",
         "numeric-senderIP", "graph-object-tenantId", "unknown-key", "unknown-tenant"],
)
async def test_malformed_alerts_are_a_422_that_quotes_nothing(intake, body):
    response = await intake.post("/v1/alerts", params={"tenant": TENANT} if "object" in body else None,
                                 content=json.dumps(body), headers=DEFENDER)
    assert response.status_code == 422, response.text
    assert PROBE not in response.text and "3325256727" not in response.text


async def test_fastapi_validation_errors_carry_no_input_context_or_unexpected_key_names(intake):
    case = f"connector-case/{TENANT}/ip/198.51.100.23"
    approval = {"action_id": f"{PROBE}<script>", "plan_hash": f"{PROBE}-hash", f"{PROBE}-key": f"{PROBE}-value"}
    response = await intake.post(f"/v1/cases/{case}/approvals", json=approval, headers=SOC1)
    assert response.status_code == 422
    assert PROBE not in response.text
    errors = response.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} >= {("body", "action_id"), ("body", "plan_hash"), ("body",)}
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)

    bad_json = await intake.post(f"/v1/cases/{case}/approvals", content=f'{{"{PROBE}": ',
                                 headers={**SOC1, "Content-Type": "application/json"})
    assert bad_json.status_code == 422 and PROBE not in bad_json.text
    long_tenant = await intake.post("/v1/alerts", params={"tenant": PROBE * 30}, json=ALERT, headers=DEFENDER)
    assert long_tenant.status_code == 422 and PROBE not in long_tenant.text


async def test_the_approver_is_the_caller_never_a_body_field(intake):
    case = f"connector-case/{TENANT}/ip/198.51.100.23"
    approval = {"action_id": "a1", "plan_hash": "0123456789ab", "approver": "ciso@contoso.com"}
    response = await intake.post(f"/v1/cases/{case}/approvals", json=approval, headers=SOC1)
    assert response.status_code == 422 and "ciso" not in response.text


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"x" * 2001, 413, "larger than 2000"),
        (b"{oops", 400, "not valid JSON"),
        (("[" * 40 + "]" * 40).encode(), 400, "nested deeper"),
        (json.dumps({"tenant": TENANT, "alert_id": "a"}).encode(), 422, "'connector' or 'ip'"),
    ],
)
async def test_bad_bodies_get_a_precise_reason_and_are_not_echoed(intake, body, status, detail):
    response = await intake.post("/v1/alerts", content=body, headers=DEFENDER)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert "oops" not in response.text


async def test_healthz_needs_no_auth_and_the_api_description_is_off_by_default(intake):
    assert (await intake.get("/healthz")).json() == {"status": "ok"}
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert (await intake.get(path)).status_code == 404


async def test_the_api_description_is_served_when_enabled():
    async with intake_without_temporal(IntakeSettings(docs=True)) as http:
        spec = (await http.get("/openapi.json")).json()
    assert "/v1/alerts" in spec["paths"]
