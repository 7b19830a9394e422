"""A worker killed (SIGKILL) while an approved action is in flight: after a restart every action
ran exactly once in effect and the case completed.

The worker runs as a real `quell worker` process; the kill lands while the connector revert is
between a throttled attempt (503, Retry-After) and its retry, which Temporal still owns.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from temporalio.api.enums.v1 import PendingActivityState

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from workers.scenarios import RunOptions, scenario_analysts, scenario_settings
from tests.conftest import PROJECT_SCENARIOS

QUELL = str(Path(sys.executable).parent / "quell")
WRITES = (
    "exo:Set-InboundConnector",
    "exo:Remove-BlockedConnector",
    "exo:Remove-BlockedSenderAddress",
    "graph:PATCH /users/{id}",
    "graph:POST /users/{id}/revokeSignInSessions",
    "graph:POST /identity/conditionalAccess/policies",
    "graph:PATCH /security/alerts_v2/{id}",
    "graph:POST /security/alerts_v2/{id}/comments",
)


def start_worker(settings, address: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "QUELL_CONFIG": "/nonexistent/quell.toml",
        "QUELL_TEMPORAL__ADDRESS": address,
        "QUELL_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "QUELL_APPROVAL": settings.approval.model_dump_json(),
        "QUELL_QUOTAS": settings.quotas.model_dump_json(),
        "QUELL_TENANTS": json.dumps([
            {**t.model_dump(mode="json"), "client_secret": t.client_secret.get_secret_value()}
            for t in settings.tenants
        ]),
        "QUELL_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([QUELL, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def until(predicate, timeout: float = 60):
    async with asyncio.timeout(timeout):
        while not (result := await predicate()):
            await asyncio.sleep(0.1)
        return result


async def test_sigkill_during_an_approved_action_runs_each_action_once(client, dev_server, cert_dir):
    text = (PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").read_text()
    text += '\nfaults:\n  - {api: "exo:Set-InboundConnector", status: 503, times: 1, retry_after_s: 3}\n'
    scenario = load_scenario(text)
    address = dev_server.client.service_client.config.target_host
    async with serving_emulator(scenario, cert_dir) as emulator:
        analysts = scenario_analysts(scenario)
        settings = scenario_settings(scenario, emulator.base_url, RunOptions(approval_timeout=300), {}, analysts)
        settings.temporal.task_queue = f"crash-{uuid.uuid4().hex[:8]}"
        first = start_worker(settings, address)
        try:
            [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
            handle = await cases.open_case(client, cases.case_input(settings, alert), settings.temporal.task_queue)

            async def pending():
                return await cases.pending(client, handle.id)

            for request in await until(pending):
                for approver in ["soc1@contoso.com", "soc2@contoso.com"][: request.still_needed]:
                    await cases.decide(client, handle.id, cases.new_decision(
                        handle.id, request.action_id, request.plan_hash, approver, True, "", analysts.keys[approver]))

            async def revert_throttled_and_retry_scheduled():
                description = await handle.describe()
                return any(
                    a.activity_type.name == "action.revert-connector-change"
                    and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                    and a.attempt >= 2
                    for a in description.raw_description.pending_activities
                )

            await until(revert_throttled_and_retry_scheduled)
        finally:
            first.kill()  # SIGKILL: no graceful shutdown, no chance to finish anything
            first.wait()
        assert first.returncode == -9

        second = start_worker(settings, address)
        try:
            async with asyncio.timeout(90):
                report = await handle.result()
        finally:
            second.terminate()
            second.wait()

        assert report.case_status == "completed"
        executed = [r for r in report.actions if r.status in ("done", "already_done")]
        assert {r.action.kind for r in executed} >= {
            "revert_connector_change", "reset_admin_password", "revoke_sessions", "unblock_connector",
            "unblock_sender", "require_admin_mfa", "classify_alert", "comment_alert"}
        assert all(r.verified for r in executed)

        succeeded = Counter(
            pattern for pattern in WRITES
            for call in emulator.state.calls_matching(pattern) if 200 <= call["status"] < 300
        )
        assert succeeded == Counter({pattern: 1 for pattern in WRITES}), succeeded
        hybrid = next(c for c in emulator.state.snapshot()["tenant"]["inbound_connectors"]
                      if c["Name"] == "Contoso Hybrid")
        assert hybrid["SenderIPAddresses"] == ["203.0.113.5"]
