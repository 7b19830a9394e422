"""The processes a benchmark runs beside the dev server: the tenant emulator (`quell emulator`,
its CPU its own, answering over HTTPS as Microsoft would) and quell's worker and intake
(`workers.processes`), each in a namespace of its own; their logs go to LOG_DIR."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from config.settings import Settings
from workers.processes import start_quell
from workers.scenarios import STATE_DIR, isolated_namespace, trust_emulator_ca

CERT_DIR = STATE_DIR / "bench-certs"
LOG_DIR = STATE_DIR / "bench-logs"
START_TIMEOUT = 60.0
STOP_GRACE = 10.0
QUELL = str(Path(sys.executable).parent / "quell")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until_answers(url: str, process: subprocess.Popen[bytes]) -> None:
    """A bounded wait for a 200 from `url` (or the process's exit)."""
    async with asyncio.timeout(START_TIMEOUT), httpx.AsyncClient() as http:
        while process.poll() is None:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.args} exited before {url} answered")


async def until_polling(client: Client, task_queue: str, worker: subprocess.Popen[bytes]) -> None:
    """A bounded wait until the worker polls for workflow and activity tasks, so no case's time
    counts the worker's start."""
    async def polling(kind: TaskQueueType.ValueType) -> bool:
        described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
        return bool(described.pollers)

    async with asyncio.timeout(START_TIMEOUT):
        while not (await polling(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
                   and await polling(TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)):
            if worker.poll() is not None:
                raise RuntimeError("quell worker exited before it polled")
            await asyncio.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL (said on stderr) for a process still running after `STOP_GRACE`: the
    bench has read what it needs, and a stop that lingers would count in the next part's seconds."""
    process.terminate()
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        print(f"  (quell {process.args[1]} still running {STOP_GRACE:.0f} s after SIGTERM: killed)", file=sys.stderr)
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Emulator:
    process: subprocess.Popen[bytes]
    base_url: str

    async def state(self) -> dict[str, Any]:
        """The tenant, its alerts and every call it answered (`/_emulator/state`)."""
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.get(f"{self.base_url}/_emulator/state")
        response.raise_for_status()
        return response.json()

    async def add_alerts(self, alerts: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            (await http.post(f"{self.base_url}/_emulator/alerts", json=alerts)).raise_for_status()


@asynccontextmanager
async def emulator_process(scenario: Path) -> AsyncIterator[Emulator]:
    """`quell emulator` serving the scenario file on a free port; this process trusts its CA."""
    trust_emulator_ca(CERT_DIR)
    port = free_port()
    process = subprocess.Popen(
        [QUELL, "emulator", "--scenario", str(scenario), "--port", str(port), "--cert-dir", str(CERT_DIR)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        emulator = Emulator(process, f"https://127.0.0.1:{port}")
        await until_answers(f"{emulator.base_url}/_emulator/healthz", process)
        yield emulator
    finally:
        stop(process)


@dataclass(frozen=True)
class Quell:
    client: Client
    """The namespace's client."""
    settings: Settings
    """As the processes have them (address, namespace, intake port)."""
    worker: subprocess.Popen[bytes]
    intake_url: str | None


@asynccontextmanager
async def quell_processes(client: Client, settings: Settings, name: str, intake: bool = True) -> AsyncIterator[Quell]:
    """A namespace of its own with a `quell worker` (and a `quell intake`, answering) for it."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    async with isolated_namespace(client) as own:
        settings = settings.model_copy(deep=True)
        settings.temporal.address = client.service_client.config.target_host
        settings.temporal.namespace = own.namespace
        settings.intake.port = free_port()
        settings.log_level = "WARNING"
        logs = LOG_DIR / name.replace(" ", "-")
        worker = start_quell("worker", settings, logs.with_name(f"{logs.name}-worker.log"))
        served = start_quell("intake", settings, logs.with_name(f"{logs.name}-intake.log")) if intake else None
        try:
            await until_polling(own, settings.temporal.task_queue, worker)
            url = None
            if served is not None:
                url = f"http://127.0.0.1:{settings.intake.port}"
                await until_answers(f"{url}/healthz", served)
            yield Quell(own, settings, worker, url)
        finally:
            if served is not None:
                stop(served)
            stop(worker)
