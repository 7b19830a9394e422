"""Tenant-wide reads shared by a tenant's cases (docs/storms.md, "Tenant calls"), against two
emulated storm tenants (bench/storm_tenants.py) over HTTPS, on a real Temporal dev server.

The worker's activities are assembled as `quell worker` assembles them (`build_activities`: one
tenant cache for the evidence and the actions); a probe workflow collects a case's evidence exactly
as the case workflow does. A tenant's second case reads none of its tenant-wide facts again, yet a
connector created after the shared read is found, an alert raised after it gets a new read, a block
quell lifts is seen by the next case, and two tenants never share an answer.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.alert_parsing import from_graph_alert
    from activities.clients import ClientPool
    from bench import storm_tenants
    from config.settings import ApprovalSettings, Settings
    from emulator.scenario import Scenario, load_scenario
    from emulator.server import EmulatorHandle, serving_emulator
    from workers.scenarios import emulator_tenant
    from workers.worker import build_activities
    from workflows import evidence
    from workflows.types import ActionInput, ActionOutcome, CaseInput, Evidence, Plan, PlannedAction

CONNECTORS = 3
TENANT_WIDE = ("exo:Get-InboundConnector", "exo:Get-OutboundConnector", "exo:Get-AcceptedDomain",
               "exo:Get-BlockedConnector", "exo:Get-BlockedSenderAddress")
"""The tenant-wide reads of every case, besides the directory's answer for the tenant's admin."""


@workflow.defn(name="test-shared-reads-evidence")
class CaseEvidence:
    """What a case collects before its verdict."""

    @workflow.run
    async def run(self, case: CaseInput) -> Evidence:
        resolution = await evidence.resolve_connector(case)
        assert resolution.connector is not None, resolution.reason
        return await evidence.collect(case, resolution, workflow.now())


@workflow.defn(name="test-shared-reads-unblock")
class Unblock:
    """Quell lifting Defender's restriction of a connector (an approved action of a case)."""

    @workflow.run
    async def run(self, action: ActionInput) -> ActionOutcome:
        return await workflow.execute_activity(
            "action.unblock-connector", action, result_type=ActionOutcome, start_to_close_timeout=timedelta(minutes=1))


@dataclass
class Tenants:
    client: Client
    queue: str
    pool: ClientPool
    scenarios: list[Scenario]
    emulators: list[EmulatorHandle]

    async def case(self, index: int, ip: str, raised: datetime) -> Evidence:
        """The evidence of the case of tenant `index`'s alert naming `ip`, raised at `raised`."""
        tenant = storm_tenants.tenant_id(index)
        alert = storm_tenants.alert(index, 0, f"alert-{uuid.uuid4().hex[:8]}", raised)
        alert["evidence"][0]["ipAddress"] = ip
        organization = self.scenarios[index].organization.model_dump(mode="json", by_alias=True)
        case = CaseInput.model_validate({"tenant_id": tenant, "alert": from_graph_alert(alert, tenant, "test"),
                                         "organization": organization})
        return await self.client.execute_workflow(
            CaseEvidence.run, case, id=f"case-{uuid.uuid4()}", task_queue=self.queue, result_type=Evidence)

    async def unblock(self, index: int, connector_guid: str) -> ActionOutcome:
        action = PlannedAction.model_validate({
            "id": "a1", "kind": "unblock_connector", "target": connector_guid, "stage": "recover",
            "reason": "test", "policy": "auto", "params": {"connector_id": connector_guid}})
        request = ActionInput(tenant_id=storm_tenants.tenant_id(index), case_id="case-test", action=action,
                              plan=Plan(actions=[action]))
        return await self.client.execute_workflow(
            Unblock.run, request, id=f"unblock-{uuid.uuid4()}", task_queue=self.queue, result_type=ActionOutcome)

    async def exchange(self, index: int, cmdlet: str, parameters: dict[str, Any]) -> None:
        """Someone else changing the tenant (an admin, an attacker): Exchange's API, not quell."""
        await self.pool.for_tenant(storm_tenants.tenant_id(index)).exo.invoke(cmdlet, parameters)

    def reads(self, index: int, since: int = 0) -> Counter[str]:
        """Tenant `index`'s tenant-wide reads from its `since`th call on."""
        admin = f"graph:GET /users/exadmin@storm{index}.example"
        return Counter(c["api"] for c in self.emulators[index].state.calls[since:] if c["api"] in (*TENANT_WIDE, admin))

    def calls(self, index: int) -> int:
        return len(self.emulators[index].state.calls)

    def guid(self, index: int, name: str) -> str:
        return next(c["Guid"] for c in self.emulators[index].state.snapshot()["tenant"]["inbound_connectors"]
                    if c["Name"] == name)


def once_each(index: int) -> Counter[str]:
    return Counter({api: 1 for api in (*TENANT_WIDE, f"graph:GET /users/exadmin@storm{index}.example")})


@pytest.fixture
async def tenants(client: Client, cert_dir: Path) -> AsyncIterator[Tenants]:
    """Two storm tenants with three connectors each (the same connector names in both), served by
    an emulator each, and a worker for both with quell's activities; unblocking a connector is auto."""
    scenarios = [load_scenario(yaml.safe_dump(storm_tenants.storm_tenant(index, CONNECTORS))) for index in (0, 1)]
    async with AsyncExitStack() as stack:
        emulators = [await stack.enter_async_context(serving_emulator(s, cert_dir)) for s in scenarios]
        settings = Settings(
            tenants=[emulator_tenant(s, e.base_url) for s, e in zip(scenarios, emulators)],
            approval=ApprovalSettings(by_action={"unblock_connector": "auto"}),
        )
        pool = ClientPool(settings.tenants)
        stack.push_async_callback(pool.aclose)
        queue = f"shared-reads-{uuid.uuid4().hex[:8]}"
        activities = build_activities(settings, pool, client, lambda: settings.approval)
        await stack.enter_async_context(
            Worker(client, task_queue=queue, workflows=[CaseEvidence, Unblock], activities=activities))
        yield Tenants(client, queue, pool, scenarios, emulators)


def raised_now() -> datetime:
    return datetime.now(UTC)


async def test_a_tenants_second_case_reads_no_tenant_wide_fact_again(tenants: Tenants) -> None:
    raised = raised_now()
    first = await tenants.case(0, storm_tenants.connector_ip(0, 0), raised)
    second = await tenants.case(0, storm_tenants.connector_ip(0, 1), raised)

    assert (first.connector.name, second.connector.name) == ("Storm Relay 00", "Storm Relay 01")
    assert first.blocked_connector and second.blocked_connector
    assert first.accepted_domains == second.accepted_domains == ["storm0.example"]
    assert [a.object_id for a in second.admins] == [a.object_id for a in first.admins] != []
    assert tenants.reads(0) == once_each(0)


async def test_two_tenants_never_share_an_answer(tenants: Tenants) -> None:
    raised = raised_now()
    zero = await tenants.case(0, storm_tenants.connector_ip(0, 0), raised)
    one = await tenants.case(1, storm_tenants.connector_ip(1, 0), raised)

    assert zero.connector.name == one.connector.name == "Storm Relay 00"
    assert (zero.connector.guid, one.connector.guid) == (tenants.guid(0, "Storm Relay 00"), tenants.guid(1, "Storm Relay 00"))
    assert (zero.accepted_domains, one.accepted_domains) == (["storm0.example"], ["storm1.example"])
    assert (tenants.reads(0), tenants.reads(1)) == (once_each(0), once_each(1))


async def test_a_connector_created_after_the_shared_read_is_found(tenants: Tenants) -> None:
    raised = raised_now()
    await tenants.case(0, storm_tenants.connector_ip(0, 0), raised)
    await tenants.exchange(0, "New-InboundConnector", {
        "Name": "Storm Relay New", "ConnectorType": "OnPremises", "SenderDomains": ["smtp:*;1"],
        "SenderIPAddresses": ["198.18.0.200"]})

    # The alert was raised before the list was read, so the list may serve it: it lacks the
    # connector the alert names, so the case reads the connectors again.
    found = await tenants.case(0, "198.18.0.200", raised)

    assert found.connector.name == "Storm Relay New"
    assert tenants.reads(0)["exo:Get-InboundConnector"] == 2


async def test_an_alert_raised_after_the_shared_read_gets_a_new_read(tenants: Tenants) -> None:
    early = raised_now()
    await tenants.case(0, storm_tenants.connector_ip(0, 0), early)
    await tenants.exchange(0, "Set-InboundConnector", {"Identity": "Storm Relay 01", "Enabled": False})
    late = raised_now()

    after = await tenants.case(0, storm_tenants.connector_ip(0, 1), late)
    before = await tenants.case(0, storm_tenants.connector_ip(0, 1), early)

    assert after.connector.enabled is False  # read since the alert was raised
    assert tenants.reads(0)["exo:Get-InboundConnector"] == 2
    # An alert raised before the newer read started is served by it too.
    assert before.connector.enabled is False


async def test_a_block_quell_lifts_is_seen_by_the_next_case(tenants: Tenants) -> None:
    raised = raised_now()
    first = await tenants.case(0, storm_tenants.connector_ip(0, 0), raised)
    outcome = await tenants.unblock(0, tenants.guid(0, "Storm Relay 01"))
    unblocked = tenants.calls(0)

    lifted = await tenants.case(0, storm_tenants.connector_ip(0, 1), raised)
    other = await tenants.case(0, storm_tenants.connector_ip(0, 2), raised)

    assert first.blocked_connector and outcome.status == "done"
    assert lifted.blocked_connector is False
    assert other.blocked_connector is True
    assert tenants.reads(0, since=unblocked)["exo:Get-BlockedConnector"] == 1  # one read after the write, for both
