"""Intake refuses what is forged, replayed, oversize or malformed, before anything reaches Temporal."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from config.settings import IntakeSettings
from workers.intake_auth import sign
from tests.intake.conftest import TENANT, intake_without_temporal

ALERT = {"tenant": TENANT, "alert_id": "a-1", "ip": "198.51.100.23"}


@pytest.fixture
async def intake():
    limits = IntakeSettings(
        api_tokens={"defender": SecretStr("tok-1")},
        hmac_secrets={"sentinel": SecretStr("hmac-secret")},
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


async def test_replayed_signature_is_refused(intake):
    body = json.dumps(ALERT).encode()
    headers = signed(body)
    assert (await intake.post("/v1/alerts", content=body, headers=headers)).status_code == 503
    assert (await intake.post("/v1/alerts", content=body, headers=headers)).status_code == 401


async def test_stale_timestamp_is_refused(intake):
    body = json.dumps(ALERT).encode()
    old = int(time.time()) - 301
    assert (await intake.post("/v1/alerts", content=body, headers=signed(body, at=old))).status_code == 401


async def test_unknown_source_and_missing_credentials_are_refused(intake):
    body = json.dumps(ALERT).encode()
    assert (await intake.post("/v1/alerts", content=body, headers=signed(body, source="x"))).status_code == 401
    assert (await intake.post("/v1/alerts", json=ALERT)).status_code == 401
    assert (await intake.post("/v1/alerts", json=ALERT, headers={"Authorization": "Bearer tok-2"})).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"x" * 2001, 413, "larger than 2000"),
        (b"{oops", 400, "not valid JSON"),
        (("[" * 40 + "]" * 40).encode(), 400, "nested deeper"),
        (json.dumps({**ALERT, "tenant": "other"}).encode(), 422, "not configured"),
        (json.dumps({"tenant": TENANT, "alert_id": "a"}).encode(), 422, "'connector' or 'ip'"),
    ],
)
async def test_bad_bodies_get_a_precise_reason_and_are_not_echoed(intake, body, status, detail):
    response = await intake.post("/v1/alerts", content=body,
                                 headers={"Authorization": "Bearer tok-1", "Content-Type": "application/json"})
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert "oops" not in response.text


async def test_healthz_needs_no_auth_and_openapi_is_published(intake):
    assert (await intake.get("/healthz")).json() == {"status": "ok"}
    spec = (await intake.get("/openapi.json")).json()
    assert "/v1/alerts" in spec["paths"]
