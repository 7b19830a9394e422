"""A storm of one tenant against its quota: 20 cases at once, paced and not.

Paced, every case completes as it does without quotas, the tenant answers few or no 429s, no
request comes back before the Retry-After the tenant gave it and no activity needs more than one
retry; unpaced, the same storm runs into the quota (which is what makes the paced numbers mean
something). What the unpaced storm costs (429s, retries, evidence given up) is printed."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle

from activities.clients import ClientPool
from emulator.scenario import Quotas
from emulator.server import serving_emulator
from tests.e2e.storm import HUNTING_QUOTA, outcome, storm_input, storm_scenario, storm_settings
from workers.scenarios import isolated_namespace
from workers.worker import new_worker
from workflows.case import ConnectorCaseWorkflow
from workflows.types import CaseReport

CASES = 20
STORM_TIMEOUT = 150  # seconds


@dataclass
class Storm:
    reports: list[CaseReport]
    throttling: dict[str, dict[str, Any]]
    """The tenant's count per family: calls, 429s, early retries, calls while throttled."""
    seconds: float
    attempts: int
    """The most attempts any activity of the storm took."""


async def most_attempts(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return max(e.activity_task_started_event_attributes.attempt for e in history.events
               if e.HasField("activity_task_started_event_attributes"))


async def storm(client: Client, cert_dir, quotas: Quotas, paced: bool) -> Storm:
    scenario = storm_scenario()
    async with isolated_namespace(client) as namespace, serving_emulator(scenario, cert_dir, quotas=quotas) as emulator:
        settings = storm_settings(scenario, emulator.base_url, paced)
        pool = ClientPool(settings.tenants, settings.quotas)
        try:
            async with new_worker(namespace, settings, pool):
                started = time.perf_counter()
                handles = [
                    await namespace.start_workflow(
                        ConnectorCaseWorkflow.run, storm_input(scenario, settings),
                        id=f"storm-{i}-{uuid.uuid4().hex[:8]}", task_queue=settings.temporal.task_queue)
                    for i in range(CASES)
                ]
                async with asyncio.timeout(STORM_TIMEOUT):
                    reports = await asyncio.gather(*(h.result() for h in handles))
                seconds = time.perf_counter() - started
        finally:
            await pool.aclose()
        return Storm([CaseReport.model_validate(r.model_dump()) for r in reports], emulator.state.throttling.summary(),
                     seconds, max([await most_attempts(h) for h in handles]))


async def test_a_paced_storm_keeps_to_the_quota_and_decides_as_without_one(client, cert_dir):
    free = await storm(client, cert_dir, Quotas(), paced=False)
    paced = await storm(client, cert_dir, HUNTING_QUOTA, paced=True)
    unpaced = await storm(client, cert_dir, HUNTING_QUOTA, paced=False)
    for name, run in (("no quota", free), ("quota, paced", paced), ("quota, unpaced", unpaced)):
        hunting = run.throttling["hunting"]
        print(f"\n{name}: {CASES} cases in {run.seconds:.1f} s; hunting calls {hunting['calls']}, "
              f"429s {hunting['throttled']}, early retries {hunting['early_retries']}, "
              f"calls while throttled {hunting['while_throttled']}; most attempts of an activity {run.attempts}; "
              f"outcomes {sorted(set(str(outcome(r)) for r in run.reports))}")

    expected = [outcome(r) for r in free.reports]
    assert len(set(map(str, expected))) == 1 and expected[0][0] == "completed"
    assert [outcome(r) for r in paced.reports] == expected
    assert paced.throttling["hunting"]["throttled"] <= 2
    assert all(family["early_retries"] == 0 for family in paced.throttling.values())
    assert paced.attempts <= 2
    # Without pacing the same storm runs into the quota many times over.
    assert unpaced.throttling["hunting"]["throttled"] >= 10 * max(1, paced.throttling["hunting"]["throttled"])
