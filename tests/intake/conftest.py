"""Helpers for the intake tests: scenario stacks in dry-run mode, bounded polls, intake clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
from temporalio.client import Client

from config.settings import IntakeSettings, Settings, TenantSettings
from emulator.scenario import Scenario, load_scenario
from emulator.timestamps import format_datetime
from workers.intake import create_app
from workers.scenarios import RunOptions, Stack, tenant_stack
from tests.conftest import PROJECT_SCENARIOS

TENANT = "11111111-2222-3333-4444-555555555555"
TOKENS = {"defender": "tok-defender", "soc1@contoso.com": "tok-soc1"}
DEFENDER = {"Authorization": "Bearer tok-defender"}


def scenario(name: str, mode: str = "dry_run") -> Scenario:
    """A project scenario; dry run by default, so cases close without waiting for anybody."""
    return load_scenario(PROJECT_SCENARIOS / f"{name}.yaml").model_copy(update={"mode": mode})


@asynccontextmanager
async def stack_for(client: Client, found: Scenario, cert_dir, approval_timeout: float = 1.0,
                    paced: bool = True) -> AsyncIterator[Stack]:
    options = RunOptions(approval_timeout=approval_timeout, paced=paced)
    async with tenant_stack(client, found, options, TOKENS, cert_dir) as s:
        yield s


@asynccontextmanager
async def intake_client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        yield http


async def temporal_down() -> Client:
    raise ConnectionError("temporal is down")


@asynccontextmanager
async def intake_without_temporal(intake: IntakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    """Intake for one configured tenant (`TENANT`) whose Temporal is down: a valid alert answers 503."""
    settings = Settings(tenants=[TenantSettings(tenant_id=TENANT, client_id="c", client_secret="s")], intake=intake)
    async with intake_client(create_app(settings, temporal_down)) as http:
        yield http


async def runs(client: Client, query: str) -> list[Any]:
    return [wf async for wf in client.list_workflows(query)]


def graph_alert(alert_id: str, ip: str, created: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """An alerts_v2 resource as the emulator stores it (for injecting alerts into its tenant)."""
    created = created or datetime.now(timezone.utc)
    return {
        "id": alert_id,
        "title": "Suspicious connector activity",
        "severity": "medium",
        "status": "new",
        "classification": "unknown",
        "serviceSource": "microsoftDefenderForOffice365",
        "detectionSource": "microsoftDefenderForOffice365",
        "createdDateTime": format_datetime(created),
        "lastUpdateDateTime": format_datetime(created),
        "comments": [],
        "evidence": [{"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": ip}],
        **extra,
    }
