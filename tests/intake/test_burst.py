"""A burst: 200 alerts about 5 connectors posted at once through the intake → exactly 5 cases that
absorbed all 200 alert ids between them (real dev server, real worker, signal-with-start)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import Client

from activities import cases
from workers.intake import create_app
from tests.conftest import eventually
from tests.intake.conftest import DEFENDER, intake_client, runs, scenario, stack_for

ALERTS = 200
CONNECTORS = 5


async def test_200_concurrent_alerts_for_5_connectors_make_5_cases(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic", mode="enforce")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir) as stack:
        # Every case waits for an approval nobody gives (comment_alert gated in the worker's
        # settings), so all five stay open through the burst whatever the machine's speed: the
        # test is about correlation.
        stack.settings.approval = stack.settings.approval.model_copy(update={"by_action": {"comment_alert": "approve"}})
        settings = stack.settings.model_copy(update={"approval": stack.settings.approval.model_copy(
            update={"expire_after": timedelta(minutes=5)})})

        async def connect() -> Client:
            return client

        bodies = [
            {"tenant": tenant, "alert_id": f"burst-{i:03d}", "connector": f"Burst Relay {i % CONNECTORS}"}
            for i in range(ALERTS)
        ]
        async with intake_client(create_app(settings, connect)) as intake:
            started = time.perf_counter()
            answers = await asyncio.gather(*(intake.post("/v1/alerts", json=b, headers=DEFENDER) for b in bodies))
            burst_s = time.perf_counter() - started
        assert [a.status_code for a in answers] == [202] * ALERTS
        case_ids = {a.json()["accepted"][0]["case_id"] for a in answers}
        assert len(case_ids) == CONNECTORS

        queue = stack.settings.temporal.task_queue
        started_runs = await runs(client, f"TaskQueue = '{queue}' AND WorkflowType = 'connector-case'")
        assert len(started_runs) == CONNECTORS  # no connector got a second run

        absorbed: dict[str, list[str]] = {}
        for case in case_ids:
            summary = await eventually(lambda c=case: cases.status(client, c), lambda s: len(s.alerts) == ALERTS // CONNECTORS)
            absorbed[case] = summary.alerts
        every_id = [a for alerts in absorbed.values() for a in alerts]
        assert sorted(every_id) == sorted(b["alert_id"] for b in bodies)  # each id exactly once
        for case, alerts in absorbed.items():
            connector = case.rsplit("/", 1)[-1]
            assert all(int(a.removeprefix("burst-")) % CONNECTORS == int(connector[-1]) for a in alerts)
        print(f"\nburst: {ALERTS} alerts → {len(case_ids)} cases, {len(every_id)} alerts absorbed, "
              f"posted in {burst_s:.2f} s")
        for case in case_ids:
            await cases.handle(client, case).terminate("burst test done")
