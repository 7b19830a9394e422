"""Hunting parameters: the project's renderer (typed `let` literals, what production sends to
Graph, which has no parameter binding) against duckdb-kql's own bound parameters, on the
connector mail query over the example scenario's tables scaled up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb_kql

from activities.hunting import default_catalogue, render
from emulator.hunting import HuntingEngine
from emulator.scenario import load_scenario

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
    query = default_catalogue()["connector-mail"].query
    params = {
        "connectorName": "Contoso Hybrid",
        "since": now - timedelta(days=8),
        "until": now,
        "lookbackStart": now - timedelta(days=7),
        "acceptedDomains": ["contoso.com", "contoso.onmicrosoft.com"],
        "partnerDomains": ["fabrikam.com"],
        "baselineStart": now - timedelta(days=30),
        "baselineEnd": now - timedelta(days=1),
        "recentStart": now - timedelta(days=1),
        "minPriorMessages": 3,
        "compromisedPerHour": 100,
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
