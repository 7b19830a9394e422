"""Benchmarks, measured side by side in one run and printed as ratios (no wall-clock limits).

1. Intake: alerts that join a running case (signal) against alerts that open a new case
   (signal-with-start that starts), through the intake HTTP app on a real dev server.
2. Hunting parameters: the project's renderer (typed `let` literals, what production sends to
   Graph, which has no parameter binding) against duckdb-kql's own bound parameters, on the
   connector mail summary query over the example scenario's tables scaled up.

Run: `make bench` (or `.venv/bin/python -m bench.run`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb_kql

from activities.hunting import default_catalogue, render
from emulator.hunting import HuntingEngine
from emulator.scenario import load_scenario
from workers.logging import configure_logging

SCENARIO = Path(__file__).parents[1] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
REPEATS = 7


def timed(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median seconds of `repeats` runs after one warm-up."""
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def scaled_tables(factor: int) -> tuple[dict[str, list[dict]], datetime]:
    scenario = load_scenario(SCENARIO)
    rows = scenario.tables["EmailEvents"]
    copies = [
        {**row, "NetworkMessageId": f"{row['NetworkMessageId']}-{n}"} for n in range(factor) for row in rows
    ]
    return {"EmailEvents": copies}, datetime.now(timezone.utc)


def bench_hunting_parameters(factor: int = 20) -> None:
    tables, now = scaled_tables(factor)
    engine = HuntingEngine(tables)
    query = default_catalogue()["connector-mail-summary"].query
    params = {
        "connectorName": "Contoso Hybrid",
        "since": now - timedelta(days=8),
        "until": now,
        "lookbackStart": now - timedelta(days=7),
        "acceptedDomains": ["contoso.com", "contoso.onmicrosoft.com"],
        "partnerDomains": ["fabrikam.com"],
    }
    rendered = render(query, params)
    con = engine._con  # the engine's own DuckDB connection, so both run on the same tables
    literal = timed(lambda: duckdb_kql.kql(con, rendered, query_now=now).fetchall())
    bound = timed(lambda: duckdb_kql.kql(con, query, params, query_now=now).fetchall())
    render_only = timed(lambda: render(query, params), repeats=200)
    print(f"hunting parameters ({len(tables['EmailEvents'])} EmailEvents rows, median of {REPEATS}):")
    print(f"  rendered literals {literal * 1000:8.1f} ms   bound parameters {bound * 1000:8.1f} ms"
          f"   ratio rendered/bound = {literal / bound:.2f}")
    print(f"  rendering itself  {render_only * 1e6:8.1f} µs   = {render_only / literal:.5f} of a query")


async def bench_intake(alerts: int = 100) -> None:
    import httpx

    from config.settings import IntakeSettings, Settings, TenantSettings
    from workers.intake import create_app
    from workers.scenarios import start_dev_server

    tenant = "11111111-2222-3333-4444-555555555555"
    settings = Settings(
        tenants=[TenantSettings(tenant_id=tenant, client_id="c", client_secret="s")],
        intake=IntakeSettings(api_tokens={"bench": "bench-token"}, sources={"bench": {"tenants": [tenant]}}),
    )
    headers = {"Authorization": "Bearer bench-token"}
    async with await start_dev_server() as env:

        async def connect():
            return env.client

        app = create_app(settings, connect)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:

            async def post_all(connector_of) -> float:
                start = time.perf_counter()
                for n in range(alerts):
                    body = {"tenant": tenant, "alert_id": f"a-{uuid.uuid4().hex}", "connector": connector_of(n)}
                    response = await http.post("/v1/alerts", json=body, headers=headers)
                    response.raise_for_status()
                return (time.perf_counter() - start) / alerts

            run = uuid.uuid4().hex[:6]
            new_cases = await post_all(lambda n: f"bench-{run}-{n}")
            joins = await post_all(lambda n: f"bench-{run}-0")
    # No worker runs: the cases only exist to be started or joined.
    print(f"intake ({alerts} alerts each, sequential, no worker):")
    print(f"  opens a new case {new_cases * 1000:7.1f} ms/alert   joins a running case {joins * 1000:7.1f} ms/alert"
          f"   ratio join/new = {joins / new_cases:.2f}")


def main() -> None:
    configure_logging("WARNING")
    asyncio.run(bench_intake())
    bench_hunting_parameters()


if __name__ == "__main__":
    main()
