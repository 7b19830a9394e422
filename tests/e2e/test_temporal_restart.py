"""The Temporal server stopped and started again on its database file while an approved write is
on the wire: the case completes, the in-flight write counts once, and no tenant write ran twice.

The worker is a real `quell worker` process and stays up across the restart: operators restart
Temporal without restarting workers, whose pollers reconnect to the same address on their own, and
the write it holds in flight must reach the restarted server as that activity's completion (a new
worker would instead leave the activity to its start-to-close timeout, as tests/e2e/test_worker_crash.py
shows). The emulator holds Set-InboundConnector (the connector revert) until the server is back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.expectations import judge
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from workers.scenarios import result_json, scenario_analysts, start_dev_server
from tests.conftest import PROJECT_SCENARIOS, free_port
from tests.e2e.test_worker_crash import WRITES, activity_attempts, approve_all, crash_settings, start_worker, writes


async def test_temporal_restarts_on_its_database_while_a_write_is_in_flight(cert_dir, tmp_path: Path):
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    db_file, port = tmp_path / "temporal.db", free_port()
    temporal = await start_dev_server(db_file=db_file, port=port)
    try:
        async with serving_emulator(scenario, cert_dir) as emulator:
            analysts = scenario_analysts(scenario)
            settings = crash_settings(scenario, emulator, analysts)
            held = emulator.holds.add("exo:Set-InboundConnector")
            worker = start_worker(settings, temporal.client, tmp_path / "worker.log")
            try:
                [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
                case = await cases.open_case(temporal.client, cases.case_input(settings, alert),
                                             settings.temporal.task_queue)
                await approve_all(temporal.client, case.id, analysts)
                await held.reached(timeout=60)  # the revert is on the wire

                await temporal.shutdown()
                temporal = await start_dev_server(db_file=db_file, port=port)
                held.release()

                handle = cases.handle(temporal.client, case.id)
                async with asyncio.timeout(90):
                    report = await handle.result()
                assert worker.poll() is None  # the same worker process all along
            finally:
                worker.terminate()
                worker.wait()
            snapshot = emulator.state.snapshot()
            called = writes(emulator)
            attempts = await activity_attempts(handle)
    finally:
        await temporal.shutdown()

    assert judge(scenario.expected, result_json(scenario, report, snapshot, 1)) == []
    assert report.case_status == "completed"
    assert attempts["action.revert-connector-change"] == [1]  # its completion reached the restarted server
    assert called == Counter({pattern: 1 for pattern in WRITES}), called  # each write called once
