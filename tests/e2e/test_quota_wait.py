"""A turn later than an attempt can wait: the activity gives up that attempt without calling the
tenant, Temporal brings it back at its turn (`QuotaWait`, `next_retry_delay`), and the retry takes
the turn the pacer kept for it. Real worker parts (pacer workflow, interceptor, evidence
activities) on the dev server against the emulator."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.clients import ClientPool
    from activities.evidence import EvidenceActivities
    from activities.pacing import RetryAtTurn
    from activities.tenant_cache import TenantCache
    from config.settings import QuotaSettings
    from emulator.server import serving_emulator
    from tests.e2e.storm import UNLIMITED, storm_scenario, storm_settings
    from workflows import retries
    from workflows.pacer import QuotaPacerWorkflow
    from workflows.types import AcceptedDomains, FamilyQuota, TenantInput

SHORT = timedelta(seconds=35)
"""Start-to-close of the probe's activities: 5 s more than an Exchange request's own timeout, so an
attempt can wait a few seconds for its turn, not ten."""
EXCHANGE = FamilyQuota(per_minute=6, burst=1)
"""A turn every 10 s."""


@workflow.defn(name="test-quota-wait-probe")
class TwoReads:
    @workflow.run
    async def run(self, tenant_id: str) -> list[AcceptedDomains]:
        # One after the other: the worker's tenant cache (ttl 0) shares only a read in flight.
        return [
            await workflow.execute_activity("evidence.accepted-domains", TenantInput(tenant_id=tenant_id),
                                            start_to_close_timeout=SHORT, retry_policy=retries.TENANT,
                                            result_type=AcceptedDomains)
            for _ in range(2)
        ]


async def test_a_turn_beyond_the_attempts_patience_brings_the_activity_back_at_it(client: Client, cert_dir):
    scenario = storm_scenario()
    async with serving_emulator(scenario, cert_dir) as emulator:
        settings = storm_settings(scenario, emulator.base_url, paced=True)
        pool = ClientPool(settings.tenants, QuotaSettings(hunting=UNLIMITED, graph=UNLIMITED, exchange=EXCHANGE))
        queue = f"quota-wait-{uuid.uuid4().hex[:8]}"
        try:
            async with Worker(client, task_queue=queue, workflows=[TwoReads, QuotaPacerWorkflow],
                              activities=EvidenceActivities(pool, TenantCache(timedelta(0))).all(), interceptors=[RetryAtTurn()]):
                handle = await client.start_workflow(TwoReads.run, scenario.tenant.id, id=f"two-reads-{queue}",
                                                     task_queue=queue)
                first, second = await handle.result()
        finally:
            await pool.aclose()

    assert first == second and first.domains
    started = [e.activity_task_started_event_attributes async for e in handle.fetch_history_events()
               if e.HasField("activity_task_started_event_attributes")]
    assert sorted(s.attempt for s in started) == [1, 2]
    retried = next(s for s in started if s.attempt == 2)
    assert retried.last_failure.application_failure_info.type == "QuotaWait"
    calls = emulator.state.calls_matching("exo:Get-AcceptedDomain")
    assert len(calls) == 2  # the attempt that gave up never called
    answered = [datetime.fromisoformat(c["at"].replace("Z", "+00:00")) for c in calls]
    assert answered[1] - answered[0] >= timedelta(seconds=9.5)  # the second call at its turn, 10 s on
