"""Intake on a real dev server, no worker (cases are only started or joined):

- latency, sequential: an alert that joins a running case against one that opens a new case;
- throughput at one concurrency: alerts accepted per second through the intake HTTP app against
  raw signal-with-starts of the same cases from the same process (`cases.open_case`), in rounds
  that alternate, so both see the same server and the same machine load.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from temporalio.client import Client

from activities import cases
from config.settings import IntakeSettings, Settings, TemporalSettings, TenantSettings
from workers.intake import create_app
from workflows.types import AlertRef

TENANT = "11111111-2222-3333-4444-555555555555"
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "quell-bench-intake"


def bench_settings() -> Settings:
    return Settings(
        temporal=TemporalSettings(task_queue=QUEUE),
        tenants=[TenantSettings(tenant_id=TENANT, client_id="c", client_secret="s")],
        intake=IntakeSettings(api_tokens={"bench": TOKEN}, sources={"bench": {"tenants": [TENANT]}}),
    )


async def concurrently(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run `one(0..count-1)` with `concurrency` at a time; the rate in calls per second."""
    numbers = iter(range(count))

    async def lane() -> None:
        for n in numbers:
            await one(n)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


def without_sniffio_lookups() -> None:
    """httpx's in-process ASGI transport imports sniffio on every request to ask whether trio
    runs; sniffio is not installed here, and each failed import searches sys.path again (about a
    millisecond of CPU, a cost of the transport, not of the intake). Fail those imports at once."""
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


async def bench_intake(client: Client, alerts: int = 100, concurrency: int = 16, rounds: int = 6) -> None:
    settings = bench_settings()
    without_sniffio_lookups()

    async def connect() -> Client:
        return client

    app = create_app(settings, connect)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:

        async def post(body: dict) -> None:
            response = await http.post("/v1/alerts", json=body, headers=HEADERS)
            response.raise_for_status()

        async def per_alert(connector_of: Callable[[int], str]) -> float:
            start = time.perf_counter()
            for n in range(alerts):
                await post({"tenant": TENANT, "alert_id": f"a-{uuid.uuid4().hex}", "connector": connector_of(n)})
            return (time.perf_counter() - start) / alerts

        run = uuid.uuid4().hex[:6]
        new_cases = await per_alert(lambda n: f"bench-{run}-{n}")
        joins = await per_alert(lambda n: f"bench-{run}-0")
        print(f"intake latency ({alerts} alerts each, sequential, no worker):")
        print(f"  opens a new case {new_cases * 1000:7.1f} ms/alert   joins a running case {joins * 1000:7.1f} ms/alert"
              f"   ratio join/new = {joins / new_cases:.2f}")

        async def through_intake(n: int, run: str) -> None:
            await post({"tenant": TENANT, "alert_id": f"i-{run}-{n}", "connector": f"storm-i-{run}-{n}"})

        async def raw(n: int, run: str) -> None:
            alert = AlertRef(alert_id=f"r-{run}-{n}", tenant_id=TENANT, connector_hint=f"storm-r-{run}-{n}")
            await cases.open_case(client, cases.case_input(settings, alert), QUEUE)

        intake_rates, raw_rates = [], []
        count = alerts * 4
        for round_ in range(rounds):
            run = uuid.uuid4().hex[:6]
            for kind in (["raw", "intake"] if round_ % 2 == 0 else ["intake", "raw"]):
                if kind == "raw":
                    raw_rates.append(await concurrently(count, concurrency, lambda n: raw(n, run)))
                else:
                    intake_rates.append(await concurrently(count, concurrency, lambda n: through_intake(n, run)))
    ratios = [i / r for i, r in zip(intake_rates, raw_rates)]
    print(f"intake throughput ({count} new cases a round, {concurrency} concurrent, {rounds} rounds, "
          "each pair side by side, alternating which goes first):")
    print(f"  intake {statistics.median(intake_rates):7.1f} alerts/s   raw signal-with-start "
          f"{statistics.median(raw_rates):7.1f} /s   ratio intake/raw = {statistics.median(ratios):.2f} "
          f"(median of {', '.join(f'{r:.2f}' for r in ratios)})")
