"""A worker killed (SIGKILL) mid-case: after a restart every action ran exactly once in effect,
the case reached the verdict it would have reached, and it completed.

The worker runs as a real `quell worker` process. One kill lands while the connector revert is
between a throttled attempt (503, Retry-After) and its retry, which Temporal still owns; the other
while an evidence read is on the wire (the emulator holds the call), which only the activity's
start-to-close timeout gives back.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.expectations import judge
from emulator.scenario import Scenario, load_scenario
from emulator.server import EmulatorHandle, serving_emulator
from workers.analysts import Analysts
from workers.processes import start_quell
from workers.scenarios import RunOptions, result_json, scenario_analysts, scenario_settings
from workflows.evidence import EXO_TIMEOUT
from tests.conftest import PROJECT_SCENARIOS, closed_activities, eventually

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
APPROVERS = ("soc1@contoso.com", "soc2@contoso.com")


def start_worker(settings, client: Client, log: Path) -> subprocess.Popen:
    """`quell worker` for the scenario's tenant, on the test's Temporal server and namespace."""
    settings = settings.model_copy(deep=True)
    settings.temporal.address = client.service_client.config.target_host
    settings.temporal.namespace = client.namespace
    settings.log_level = "WARNING"
    return start_quell("worker", settings, log)


async def result_on_a_new_worker(settings, client: Client, handle: WorkflowHandle, log: Path) -> Any:
    """Start another `quell worker` and wait (90 s at most) for the workflow's result."""
    worker = start_worker(settings, client, log)
    try:
        async with asyncio.timeout(90):
            return await handle.result()
    finally:
        worker.terminate()
        worker.wait()


def crash_settings(scenario: Scenario, emulator: EmulatorHandle, analysts: Analysts):
    settings = scenario_settings(scenario, emulator.base_url, RunOptions(approval_timeout=300), {}, analysts)
    settings.temporal.task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    return settings


async def approve_all(client: Client, case: str, analysts: Analysts, timeout: float = 60) -> None:
    """Once the case asks (within `timeout`), approve every pending action (two approvers where it takes two)."""
    async def pending():
        return await cases.pending(client, case)

    for request in await eventually(pending, bool, timeout):
        for approver in APPROVERS[: request.still_needed]:
            await cases.decide(client, case, cases.new_decision(
                case, request.action_id, request.plan_hash, approver, True, "", analysts.keys[approver]))


def writes(emulator: EmulatorHandle, succeeded_only: bool = False) -> Counter:
    """Each tenant write pattern against the number of its calls (that succeeded)."""
    return Counter(
        pattern for pattern in WRITES
        for call in emulator.state.calls_matching(pattern) if not succeeded_only or 200 <= call["status"] < 300
    )


async def activity_attempts(handle: WorkflowHandle) -> dict[str, list[int]]:
    """Activity type -> the attempt that completed it, for every activity that completed."""
    attempts: dict[str, list[int]] = {}
    for kind, attempt, event in await closed_activities(handle):
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attempts.setdefault(kind, []).append(attempt)
    return attempts


async def test_sigkill_during_an_approved_action_runs_each_action_once(client, cert_dir, tmp_path):
    text = (PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").read_text()
    text += '\nfaults:\n  - {api: "exo:Set-InboundConnector", status: 503, times: 1, retry_after_s: 3}\n'
    scenario = load_scenario(text)
    async with serving_emulator(scenario, cert_dir) as emulator:
        analysts = scenario_analysts(scenario)
        settings = crash_settings(scenario, emulator, analysts)
        first = start_worker(settings, client, tmp_path / "first.log")
        try:
            [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
            handle = await cases.open_case(client, cases.case_input(settings, alert), settings.temporal.task_queue)
            await approve_all(client, handle.id, analysts)

            async def revert_throttled_and_retry_scheduled():
                description = await handle.describe()
                return any(
                    a.activity_type.name == "action.revert-connector-change"
                    and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                    and a.attempt >= 2
                    for a in description.raw_description.pending_activities
                )

            await eventually(revert_throttled_and_retry_scheduled, bool, 60)
        finally:
            first.kill()  # SIGKILL: no graceful shutdown, no chance to finish anything
            first.wait()
        assert first.returncode == -9

        report = await result_on_a_new_worker(settings, client, handle, tmp_path / "second.log")

        assert report.case_status == "completed"
        executed = [r for r in report.actions if r.status in ("done", "already_done")]
        assert {r.action.kind for r in executed} >= {
            "revert_connector_change", "reset_admin_password", "revoke_sessions", "unblock_connector",
            "unblock_sender", "require_admin_mfa", "classify_alert", "comment_alert"}
        assert all(r.verified for r in executed)

        succeeded = writes(emulator, succeeded_only=True)
        assert succeeded == Counter({pattern: 1 for pattern in WRITES}), succeeded
        hybrid = next(c for c in emulator.state.snapshot()["tenant"]["inbound_connectors"]
                      if c["Name"] == "Contoso Hybrid")
        assert hybrid["SenderIPAddresses"] == ["203.0.113.5"]


EVIDENCE_BESIDE_RESTRICTIONS = {
    "evidence.resolve-connector", "evidence.audit-log", "evidence.mail-stats",
    "evidence.admin-sign-ins", "evidence.directory-accounts",
}
"""The scenario's evidence reads besides the restrictions (Get-BlockedConnector, Get-BlockedSenderAddress)."""


async def test_sigkill_during_evidence_collection_reaches_the_same_verdict(client, cert_dir, tmp_path):
    """Get-BlockedConnector is held on the wire when the worker dies, after every other evidence read
    has answered: nothing else is in flight, and the verdict waits for it. The second worker gets
    the read back once its start-to-close timeout (60 s) has passed."""
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    async with serving_emulator(scenario, cert_dir) as emulator:
        analysts = scenario_analysts(scenario)
        settings = crash_settings(scenario, emulator, analysts)
        held = emulator.holds.add("exo:Get-BlockedConnector")
        first = start_worker(settings, client, tmp_path / "first.log")
        try:
            [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
            handle = await cases.open_case(client, cases.case_input(settings, alert), settings.temporal.task_queue)
            await held.reached(timeout=60)

            async def only_the_held_read_left():
                pending = (await handle.describe()).raw_description.pending_activities
                done = set(await activity_attempts(handle))
                return done >= EVIDENCE_BESIDE_RESTRICTIONS and [
                    (a.activity_type.name, a.state) for a in pending
                ] == [("evidence.restricted-entities", PendingActivityState.PENDING_ACTIVITY_STATE_STARTED)]

            await eventually(only_the_held_read_left, bool, 60)
        finally:
            first.kill()  # SIGKILL while Get-BlockedConnector waits for its answer
            first.wait()
            held.release()  # its answer goes to a closed connection
        assert first.returncode == -9

        second = start_worker(settings, client, tmp_path / "second.log")
        try:
            async with asyncio.timeout(EXO_TIMEOUT.total_seconds() + 90):
                await approve_all(client, handle.id, analysts, timeout=EXO_TIMEOUT.total_seconds() + 60)
                report = await handle.result()
        finally:
            second.terminate()
            second.wait()

        # The verdict, findings, plan, actions and tenant the scenario expects, as without the kill.
        assert judge(scenario.expected, result_json(scenario, report, emulator.state.snapshot(), 1)) == []
        assert report.case_status == "completed"
        attempts = await activity_attempts(handle)
        assert attempts["evidence.restricted-entities"] == [2]  # the killed attempt, then the second worker's
        assert all(a == [1] for kind, a in attempts.items()
                   if kind.startswith("evidence.") and kind != "evidence.restricted-entities")
        # The killed attempt's read and the second worker's (the unblock actions read it again later).
        assert [c["status"] for c in emulator.state.calls_matching("exo:Get-BlockedConnector")][:2] == [200, 200]
        assert writes(emulator) == Counter({pattern: 1 for pattern in WRITES})  # each called once
