"""Helpers for the intake tests: scenario stacks in dry-run mode, bounded polls, an intake client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from emulator.scenario import Scenario, load_scenario
from emulator.timestamps import format_datetime
from workers.scenarios import RunOptions, Stack, tenant_stack
from tests.conftest import PROJECT_SCENARIOS

TOKENS = {"defender": "tok-defender", "soc1@contoso.com": "tok-soc1"}
DEFENDER = {"Authorization": "Bearer tok-defender"}
T = TypeVar("T")


def scenario(name: str, mode: str = "dry_run") -> Scenario:
    """A project scenario; dry run by default, so cases close without waiting for anybody."""
    return load_scenario(PROJECT_SCENARIOS / f"{name}.yaml").model_copy(update={"mode": mode})


@asynccontextmanager
async def stack_for(client: Client, found: Scenario, cert_dir, approval_timeout: float = 1.0) -> AsyncIterator[Stack]:
    async with tenant_stack(client, found, RunOptions(approval_timeout=approval_timeout), TOKENS, cert_dir) as s:
        yield s


@asynccontextmanager
async def intake_client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        yield http


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Read until `done` holds: a bounded poll on state, never a sleep standing in for a sync."""
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(0.05)


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
