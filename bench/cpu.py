"""CPU per case: the emulator's process against the worker's, for the same cases.

The emulator serves the example scenario from its own process (`quell emulator`), so its CPU
time is its own (read from /proc); the worker runs in this process, whose CPU time (every
thread, the SDK's core included) is the worker's plus a driver that only starts cases and waits
for their results. The Temporal dev server is a third process, counted in neither. Cases run in
dry-run mode (every evidence read, planning, no approvals), a few at a time after a warm-up case.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from activities import cases
from activities.alert_parsing import from_graph_alert
from activities.clients import ClientPool
from bench.processes import emulator_process
from emulator.scenario import load_scenario
from workers.scenarios import RunOptions, scenario_settings
from workers.worker import new_worker
from workflows.case import ConnectorCaseWorkflow

SCENARIO = Path(__file__).parents[1] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"


def cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds from a /proc `stat` file (fields 14 and 15)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_cpu(pid: int) -> tuple[float, float]:
    """(whole process, its event-loop thread) CPU seconds; the main thread's id is the pid."""
    return cpu_seconds(Path(f"/proc/{pid}/stat")), cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


async def bench_cpu_per_case(client: Client, count: int = 8, concurrency: int = 4) -> None:
    async with emulator_process(SCENARIO) as emulator:
        scenario = load_scenario(SCENARIO).model_copy(update={"mode": "dry_run"})
        settings = scenario_settings(scenario, emulator.base_url, RunOptions(), {"bench": uuid.uuid4().hex})
        alert = from_graph_alert(scenario.alert, scenario.tenant.id, source="webhook")
        gate = asyncio.Semaphore(concurrency)
        pid = emulator.process.pid

        async def one_case() -> None:
            async with gate:
                await client.execute_workflow(
                    ConnectorCaseWorkflow.run, cases.case_input(settings, alert),
                    id=f"bench-case/{uuid.uuid4().hex}", task_queue=settings.temporal.task_queue,
                )

        pool = ClientPool(settings.tenants)
        try:
            async with new_worker(client, settings, pool):
                await one_case()  # warm-up: imports, connections, tokens, first translations
                (emulator_before, loop_before), worker_before = emulator_cpu(pid), time.process_time()
                started = time.perf_counter()
                await asyncio.gather(*(one_case() for _ in range(count)))
                elapsed = time.perf_counter() - started
                emulator_after, loop_after = emulator_cpu(pid)
                worker = (time.process_time() - worker_before) / count
        finally:
            await pool.aclose()
    total, loop = (emulator_after - emulator_before) / count, (loop_after - loop_before) / count
    print(f"CPU per case ({count} dry-run cases of {SCENARIO.stem}, {concurrency} at a time, {elapsed:.1f} s):")
    print(f"  emulator {total * 1000:7.0f} ms   worker {worker * 1000:7.0f} ms   ratio emulator/worker = {total / worker:.2f}")
    print(f"  emulator: event loop {loop * 1000:.0f} ms, other threads (hunting: DuckDB) {(total - loop) * 1000:.0f} ms")
