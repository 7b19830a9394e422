"""Evidence activities against the emulator, driven by the workflow-side orchestration.

A probe workflow runs `resolve_connector` and `collect_evidence` exactly as the case workflow
does, on a real Temporal dev server, with the activities calling the emulator over HTTPS.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.clients import ClientPool
    from activities.evidence import EvidenceActivities
    from config.settings import TenantSettings
    from emulator.scenario import Scenario, load_scenario
    from emulator.server import running_emulator
    from activities.alert_parsing import from_graph_alert
    from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
    from workflows import evidence, grading
    from workflows.types import CaseInput, ConnectorChangesInput, MailStatsInput, Organization, Verdict

# A literal path, not tests.conftest: the probe workflow below re-imports this module in the sandbox.
TP = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
FP = Path(__file__).parents[2] / "emulator" / "scenarios" / "fp-scanner-relay-normal-traffic.yaml"


@workflow.defn(name="test-evidence-probe")
class EvidenceProbe:
    @workflow.run
    async def run(self, case: CaseInput) -> Verdict:
        resolution = await evidence.resolve_connector(case)
        if resolution.connector is None:
            return grading.connector_unresolved_verdict(resolution)
        collected = await evidence.collect_evidence(case, resolution.connector, workflow.now())
        return grading.grade(collected, case.organization, case.thresholds, workflow.now())


def with_faults(path: Path, faults: list[dict[str, Any]]) -> Scenario:
    data = yaml.safe_load(path.read_text())
    return load_scenario(yaml.safe_dump({**data, "faults": faults}, sort_keys=False))


def case_for(scenario: Scenario) -> CaseInput:
    organization = Organization.model_validate(scenario.organization.model_dump(mode="json", by_alias=True))
    alert = from_graph_alert(scenario.alert, scenario.tenant.id, "test")
    return CaseInput(tenant_id=scenario.tenant.id, alert=alert, organization=organization)


def pool_for(scenario: Scenario, base_url: str) -> ClientPool:
    return ClientPool([TenantSettings(
        tenant_id=scenario.tenant.id, client_id=EMULATOR_CLIENT_ID, client_secret=EMULATOR_CLIENT_SECRET,
        authority_host=base_url, disable_instance_discovery=True, graph_base_url=base_url, exo_base_url=base_url,
    )])


@pytest.fixture
def served(request: pytest.FixtureRequest, cert_dir: Path) -> Iterator[tuple[Scenario, ClientPool]]:
    scenario: Scenario = request.param
    with running_emulator(scenario, cert_dir) as emulator:
        yield scenario, pool_for(scenario, emulator.base_url)


async def probe(client: Client, scenario: Scenario, pool: ClientPool) -> Verdict:
    queue = f"evidence-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(client, task_queue=queue, workflows=[EvidenceProbe],
                          activities=EvidenceActivities(pool).all()):
            return await client.execute_workflow(
                EvidenceProbe.run, case_for(scenario), id=f"probe-{uuid.uuid4()}", task_queue=queue,
                result_type=Verdict,
            )
    finally:
        await pool.aclose()


@pytest.mark.parametrize("served", [load_scenario(TP)], indirect=True, ids=["tp"])
async def test_hijacked_hybrid_connector_is_a_true_positive(client: Client, served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    verdict = await probe(client, scenario, pool)
    found = {f.id for f in verdict.findings}
    assert verdict.kind == scenario.expected.verdict == "true_positive", verdict.reasons
    assert set(scenario.expected.findings_include) <= found
    assert not set(scenario.expected.findings_exclude) & found


@pytest.mark.parametrize("served", [load_scenario(FP)], indirect=True, ids=["fp"])
async def test_scanner_relay_is_a_false_positive(client: Client, served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    verdict = await probe(client, scenario, pool)
    found = {f.id for f in verdict.findings}
    assert verdict.kind == "false_positive", verdict.reasons
    assert set(scenario.expected.findings_include) <= found
    assert not set(scenario.expected.findings_exclude) & found


@pytest.mark.parametrize(
    "served",
    [with_faults(TP, [{"api": "graph:POST /security/runHuntingQuery", "status": 500, "match": "IdentityLogonEvents"}])],
    indirect=True, ids=["tp-signins-down"],
)
async def test_a_source_down_after_retries_is_evidence_unavailable(
    client: Client, served: tuple[Scenario, ClientPool]
) -> None:
    scenario, pool = served
    verdict = await probe(client, scenario, pool)
    unavailable = next(f for f in verdict.findings if f.id == "evidence_unavailable")
    assert verdict.kind == "needs_review"
    assert unavailable.evidence["sources"] == ["admin_sign_ins"]
    assert verdict.has("change_by_unexpected_actor")  # the rest was still collected


@pytest.mark.parametrize(
    "served",
    [with_faults(TP, [{"api": "graph:POST /security/auditLog/queries", "status": 403}])],
    indirect=True, ids=["tp-graph-audit-forbidden"],
)
async def test_audit_changes_fall_back_to_search_unified_audit_log(served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    now = datetime.now(UTC)
    request = ConnectorChangesInput(
        tenant_id=scenario.tenant.id, connector_name="Contoso Hybrid",
        connector_guid="9b0e4c50-0000-4000-8000-000000000010", direction="inbound",
        since=now - evidence.AUDIT_HISTORY, until=now,
    )
    try:
        result = await ActivityEnvironment().run(EvidenceActivities(pool).connector_changes, request)
    finally:
        await pool.aclose()
    assert result.source == "search_unified_audit_log"
    assert [(c.actor, c.parameters["SenderIPAddresses"]) for c in result.changes] == [
        ("exadmin@contoso.com", ["203.0.113.5"]),
        ("helpdesk.op@contoso.com", ["198.51.100.23"]),
    ]


FAX = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-legacy-fax-gateway-open-relay.yaml"


def fax_mail_request(scenario: Scenario) -> MailStatsInput:
    return MailStatsInput(
        tenant_id=scenario.tenant.id, connector_name="Legacy Fax Gateway", now=datetime.now(UTC),
        lookback=timedelta(days=7), accepted_domains=list(scenario.tenant.accepted_domains),
        partner_domains=list(scenario.organization.partner_domains),
    )


@pytest.mark.parametrize("served", [load_scenario(FAX)], indirect=True, ids=["fax"])
async def test_message_trace_counts_filtered_as_spam_from_the_connector_ips(
    served: tuple[Scenario, ClientPool],
) -> None:
    scenario, pool = served
    try:
        stats = await ActivityEnvironment().run(EvidenceActivities(pool).mail_stats, fax_mail_request(scenario))
    finally:
        await pool.aclose()
    assert stats.junk_or_quarantined == 315
    assert stats.trace_filtered_as_spam == 315  # the same messages, seen by message trace


@pytest.mark.parametrize(
    "served", [with_faults(FAX, [{"api": "exo:Get-MessageTraceV2", "status": 500}])], indirect=True,
    ids=["fax-trace-down"],
)
async def test_message_trace_down_leaves_the_mail_evidence_intact(served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    try:
        stats = await ActivityEnvironment().run(EvidenceActivities(pool).mail_stats, fax_mail_request(scenario))
    finally:
        await pool.aclose()
    assert stats.trace_filtered_as_spam is None
    assert stats.junk_or_quarantined == 315
