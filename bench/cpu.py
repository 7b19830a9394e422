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
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from activities import cases
from activities.alert_parsing import from_graph_alert
from activities.clients import ClientPool
from emulator.scenario import load_scenario
from workers.scenarios import STATE_DIR, RunOptions, scenario_settings, trust_emulator_ca
from workers.worker import new_worker
from workflows.case import ConnectorCaseWorkflow

SCENARIO = Path(__file__).parents[1] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
CERT_DIR = STATE_DIR / "bench-certs"
START_TIMEOUT = 60.0


def cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds from a /proc `stat` file (fields 14 and 15)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_cpu(pid: int) -> tuple[float, float]:
    """(whole process, its event-loop thread) CPU seconds; the main thread's id is the pid."""
    return cpu_seconds(Path(f"/proc/{pid}/stat")), cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until_up(base_url: str, emulator: subprocess.Popen[bytes]) -> None:
    """A bounded wait for the emulator's health answer (or its exit)."""
    async with asyncio.timeout(START_TIMEOUT), httpx.AsyncClient() as http:
        while emulator.poll() is None:
            try:
                if (await http.get(f"{base_url}/_emulator/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the emulator exited before it answered")


async def bench_cpu_per_case(client: Client, count: int = 8, concurrency: int = 4) -> None:
    trust_emulator_ca(CERT_DIR)
    port = free_port()
    quell = Path(sys.executable).parent / "quell"
    emulator = subprocess.Popen(
        [str(quell), "emulator", "--scenario", str(SCENARIO), "--port", str(port), "--cert-dir", str(CERT_DIR)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"https://127.0.0.1:{port}"
        await until_up(base_url, emulator)
        scenario = load_scenario(SCENARIO).model_copy(update={"mode": "dry_run"})
        settings = scenario_settings(scenario, base_url, RunOptions(), {"bench": uuid.uuid4().hex})
        alert = from_graph_alert(scenario.alert, scenario.tenant.id, source="webhook")
        gate = asyncio.Semaphore(concurrency)

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
                (emulator_before, loop_before), worker_before = emulator_cpu(emulator.pid), time.process_time()
                started = time.perf_counter()
                await asyncio.gather(*(one_case() for _ in range(count)))
                elapsed = time.perf_counter() - started
                emulator_after, loop_after = emulator_cpu(emulator.pid)
                worker = (time.process_time() - worker_before) / count
        finally:
            await pool.aclose()
    finally:
        emulator.terminate()
        emulator.wait()
    total, loop = (emulator_after - emulator_before) / count, (loop_after - loop_before) / count
    print(f"CPU per case ({count} dry-run cases of {SCENARIO.stem}, {concurrency} at a time, {elapsed:.1f} s):")
    print(f"  emulator {total * 1000:7.0f} ms   worker {worker * 1000:7.0f} ms   ratio emulator/worker = {total / worker:.2f}")
    print(f"  emulator: event loop {loop * 1000:.0f} ms, other threads (hunting: DuckDB) {(total - loop) * 1000:.0f} ms")
