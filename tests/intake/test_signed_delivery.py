"""Signed deliveries against a real Temporal server: a retry after a 503 is accepted, an accepted
delivery is never accepted again while its timestamp is inside the window (a future-dated one
included), and the intake's clock is the one the window is measured by."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from config.settings import IntakeSettings, Settings, SourceGrant, TemporalSettings, TenantSettings
from workers.intake import create_app
from workers.intake_auth import sign
from tests.intake.conftest import TENANT, intake_client

SECRET = "hmac-secret"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FlakyTemporal:
    """Temporal unreachable until `up`: the intake's connect fails (503), then reaches the server."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.up = False

    async def __call__(self) -> Client:
        if not self.up:
            raise ConnectionError("temporal is down")
        return self.client


@pytest.fixture
async def deployment(client: Client) -> AsyncIterator[tuple[httpx.AsyncClient, FlakyTemporal, Clock]]:
    queue = f"quell-signed-{uuid.uuid4().hex[:8]}"  # no worker: the cases just wait, and are terminated
    settings = Settings(
        temporal=TemporalSettings(task_queue=queue),
        tenants=[TenantSettings(tenant_id=TENANT, client_id="c", client_secret="s")],
        intake=IntakeSettings(hmac_secrets={"sentinel": SecretStr(SECRET)},
                              sources={"sentinel": SourceGrant(tenants=[TENANT])}),
    )
    temporal, clock = FlakyTemporal(client), Clock()
    async with intake_client(create_app(settings, temporal, clock)) as http:
        yield http, temporal, clock
    async for found in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
        await client.get_workflow_handle(found.id, run_id=found.run_id).terminate("test done")


def delivery(at: float) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"tenant": TENANT, "alert_id": f"a-{uuid.uuid4().hex[:8]}", "ip": "198.51.100.23"}).encode()
    stamp = int(at)
    return body, {"X-Quell-Source": "sentinel", "X-Quell-Timestamp": str(stamp),
                  "X-Quell-Signature": sign(SECRET, stamp, body), "Content-Type": "application/json"}




async def test_a_delivery_refused_with_503_is_accepted_when_retried_verbatim_and_then_never_again(deployment):
    http, temporal, clock = deployment
    body, headers = delivery(clock.now)
    assert (await http.post("/v1/alerts", content=body, headers=headers)).status_code == 503
    temporal.up = True
    accepted = await http.post("/v1/alerts", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    replayed = await http.post("/v1/alerts", content=body, headers=headers)
    assert replayed.status_code == 401


async def test_a_future_dated_signature_is_remembered_until_its_own_timestamp_leaves_the_window(deployment):
    http, temporal, clock = deployment
    temporal.up = True
    body, headers = delivery(clock.now + 50)  # inside the 60 s skew allowance
    assert (await http.post("/v1/alerts", content=body, headers=headers)).status_code == 202
    clock.now += 301  # 300 s after it was accepted; its timestamp is in the window another 49 s
    assert (await http.post("/v1/alerts", content=body, headers=headers)).status_code == 401
    clock.now += 60  # now the timestamp is stale as well
    assert (await http.post("/v1/alerts", content=body, headers=headers)).status_code == 401
    fresh_body, fresh_headers = delivery(clock.now)  # the memory made room, new deliveries pass
    assert (await http.post("/v1/alerts", content=fresh_body, headers=fresh_headers)).status_code == 202
