"""What pacing costs when it holds nothing back: the worker's CPU and the wall time per case with
every call taking a turn from the quota pacer, against the same cases unpaced.

The emulator serves the example scenario from its own process and the buckets are far larger than
the cases need, so the difference is the pacer's round trips and workflow tasks alone. Runs
alternate (unpaced, paced, unpaced, paced) on one dev server, each after a warm-up case.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.client import Client

from activities import cases
from activities.alert_parsing import from_graph_alert
from activities.clients import ClientPool
from bench.cpu import SCENARIO
from bench.processes import emulator_process
from config.settings import QuotaSettings
from emulator.scenario import load_scenario
from workers.scenarios import RunOptions, scenario_settings
from workers.worker import new_worker
from workflows.case import ConnectorCaseWorkflow
from workflows.types import FamilyQuota

OPEN = FamilyQuota(per_minute=60_000, burst=1_000)


async def cases_per_run(client: Client, base_url: str, paced: bool, count: int, concurrency: int) -> tuple[float, float]:
    """(worker CPU seconds per case, wall seconds for the run) of `count` dry-run cases."""
    scenario = load_scenario(SCENARIO).model_copy(update={"mode": "dry_run"})
    settings = scenario_settings(scenario, base_url, RunOptions(), {"bench": uuid.uuid4().hex})
    settings.quotas = QuotaSettings(enabled=paced, hunting=OPEN, graph=OPEN, exchange=OPEN)
    alert = from_graph_alert(scenario.alert, scenario.tenant.id, source="webhook")
    gate = asyncio.Semaphore(concurrency)

    async def one_case() -> None:
        async with gate:
            await client.execute_workflow(ConnectorCaseWorkflow.run, cases.case_input(settings, alert),
                                          id=f"bench-case/{uuid.uuid4().hex}", task_queue=settings.temporal.task_queue)

    pool = ClientPool(settings.tenants, settings.quotas)
    try:
        async with new_worker(client, settings, pool):
            await one_case()  # warm-up: connections, tokens, the pacer started
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one_case() for _ in range(count)))
            return (time.process_time() - cpu) / count, time.perf_counter() - wall
    finally:
        await pool.aclose()


async def bench_pacing_cost(client: Client, count: int = 8, concurrency: int = 4) -> None:
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    async with emulator_process(SCENARIO) as emulator:
        for paced in (False, True, False, True):
            runs[paced].append(await cases_per_run(client, emulator.base_url, paced, count, concurrency))
    print(f"Pacing that holds nothing back ({count} dry-run cases of {SCENARIO.stem}, {concurrency} at a time, twice):")
    for paced, label in ((False, "unpaced"), (True, "paced")):
        cpu = [c * 1000 for c, _ in runs[paced]]
        wall = [w for _, w in runs[paced]]
        print(f"  {label:8} worker CPU per case {', '.join(f'{c:.0f}' for c in cpu)} ms   "
              f"run {', '.join(f'{w:.1f}' for w in wall)} s")
    ratio = sum(c for c, _ in runs[True]) / sum(c for c, _ in runs[False])
    print(f"  worker CPU paced/unpaced = {ratio:.2f}")
