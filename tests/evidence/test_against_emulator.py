"""Evidence activities against the emulator, driven by the workflow-side orchestration.

A probe workflow reads the evidence exactly as the case workflow does (the audit reads started
with the connector's resolution, then `collect_beside_audit`), on a real Temporal dev server, with
the activities calling the emulator over HTTPS.
"""

from __future__ import annotations

import asyncio
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
    from activities.tenant_cache import TenantCache
    from config.settings import TenantSettings
    from emulator.scenario import Scenario, load_scenario
    from emulator.expectations import HUNTING
    from emulator.server import EmulatorHandle, running_emulator
    from activities.alert_parsing import from_graph_alert
    from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
    from workflows import evidence, grading
    from workflows.types import (
        AuditLogInput,
        CaseInput,
        ConnectorChangesInput,
        Evidence,
        MailStatsInput,
        Organization,
        ResolveConnectorInput,
        Verdict,
    )

# A literal path, not tests.conftest: the probe workflow below re-imports this module in the sandbox.
TP = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
FP = Path(__file__).parents[2] / "emulator" / "scenarios" / "fp-scanner-relay-normal-traffic.yaml"


async def collected(case: CaseInput) -> Evidence:
    """What the case workflow collects for the resolved connector."""
    early = evidence.start_early_reads(case, workflow.now(), mail=True)
    resolution = await evidence.resolve_connector(case)
    assert resolution.connector is not None, resolution.reason
    return await evidence.collect_beside_audit(case, resolution, early)


@workflow.defn(name="test-evidence-probe")
class EvidenceProbe:
    @workflow.run
    async def run(self, case: CaseInput) -> Verdict:
        return grading.grade(await collected(case), case.organization, case.thresholds, workflow.now())


@workflow.defn(name="test-evidence-collector")
class EvidenceCollector:
    """What the case workflow collects for the resolved connector (`Evidence`)."""

    @workflow.run
    async def run(self, case: CaseInput) -> Evidence:
        return await collected(case)


def activities(pool: ClientPool) -> EvidenceActivities:
    return EvidenceActivities(pool, TenantCache(timedelta(minutes=1)))


def with_faults(path: Path, faults: list[dict[str, Any]]) -> Scenario:
    data = yaml.safe_load(path.read_text())
    return load_scenario(yaml.safe_dump({**data, "faults": faults}, sort_keys=False))


def case_for(scenario: Scenario) -> CaseInput:
    organization = Organization.model_validate(scenario.organization.model_dump(mode="json", by_alias=True))
    alert = from_graph_alert(scenario.alert, scenario.tenant.id, "test")
    return CaseInput(tenant_id=scenario.tenant.id, alert=alert, organization=organization)


def tenant_settings(scenario: Scenario, base_url: str) -> TenantSettings:
    return TenantSettings(
        tenant_id=scenario.tenant.id, client_id=EMULATOR_CLIENT_ID, client_secret=EMULATOR_CLIENT_SECRET,
        authority_host=base_url, disable_instance_discovery=True, graph_base_url=base_url, exo_base_url=base_url,
    )


def pool_for(scenario: Scenario, base_url: str) -> ClientPool:
    return ClientPool([tenant_settings(scenario, base_url)])


@pytest.fixture
def served(request: pytest.FixtureRequest, cert_dir: Path) -> Iterator[tuple[Scenario, ClientPool]]:
    scenario: Scenario = request.param
    with running_emulator(scenario, cert_dir) as emulator:
        yield scenario, pool_for(scenario, emulator.base_url)


async def probe(client: Client, scenario: Scenario, pool: ClientPool) -> Verdict:
    queue = f"evidence-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(client, task_queue=queue, workflows=[EvidenceProbe], activities=activities(pool).all()):
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


DOWN = {  # the hunting query that fails after its retries, and the sources the case then lacks
    "tp-signins-down": ("IdentityLogonEvents", ["admin_sign_ins"]),
    # The mail activity reads the accepted domains it classifies by: when it is down, so are they.
    "tp-mail-down": ("UrlClickEvents", ["accepted_domains", "compromised_senders", "mail_stats"]),
}


@pytest.mark.parametrize(
    ("served", "sources"),
    [(with_faults(TP, [{"api": "graph:POST /security/runHuntingQuery", "status": 500, "match": match}]), sources)
     for match, sources in DOWN.values()],
    indirect=["served"], ids=list(DOWN),
)
async def test_a_source_down_after_retries_is_evidence_unavailable(
    client: Client, served: tuple[Scenario, ClientPool], sources: list[str]
) -> None:
    scenario, pool = served
    verdict = await probe(client, scenario, pool)
    unavailable = next(f for f in verdict.findings if f.id == "evidence_unavailable")
    assert verdict.kind == "needs_review"
    assert unavailable.evidence["sources"] == sources
    assert verdict.has("change_by_unexpected_actor")  # the rest was still collected


def audit_request() -> AuditLogInput:
    now = datetime.now(UTC)
    return AuditLogInput(tenant_id=load_scenario(TP).tenant.id, since=now - evidence.AUDIT_HISTORY,
                         lookback_start=now - timedelta(days=7), until=now)


@pytest.mark.parametrize(
    "served",
    [with_faults(TP, [{"api": "graph:POST /security/auditLog/queries", "status": 403}])],
    indirect=True, ids=["tp-graph-audit-forbidden"],
)
async def test_audit_records_fall_back_to_search_unified_audit_log(served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    try:
        result = await ActivityEnvironment().run(activities(pool).audit_log, audit_request())
    finally:
        await pool.aclose()
    assert result.source == "search_unified_audit_log"
    assert [s.split(":")[0] for s in result.failed_sources] == ["graph_audit_log"]
    assert [(c.actor, c.object_id, c.parameters["SenderIPAddresses"]) for c in result.connector_changes] == [
        ("exadmin@contoso.com", "Contoso Hybrid", ["203.0.113.5"]),
        ("helpdesk.op@contoso.com", "Contoso Hybrid", ["198.51.100.23"]),
    ]


@pytest.mark.parametrize("served", [load_scenario(TP)], indirect=True, ids=["tp"])
async def test_cases_begun_before_version_2_still_read_one_connectors_changes(served: tuple[Scenario, ClientPool]) -> None:
    scenario, pool = served
    now = datetime.now(UTC)
    request = ConnectorChangesInput(
        tenant_id=scenario.tenant.id, connector_name="Contoso Hybrid",
        connector_guid="9b0e4c50-0000-4000-8000-000000000010", direction="inbound",
        since=now - evidence.AUDIT_HISTORY, until=now,
    )
    try:
        result = await ActivityEnvironment().run(activities(pool).connector_changes, request)
    finally:
        await pool.aclose()
    assert result.source == "graph_audit_log"
    assert [c.actor for c in result.changes] == ["exadmin@contoso.com", "helpdesk.op@contoso.com"]


AUDIT_DOWN = [
    {"api": "graph:POST /security/auditLog/queries", "status": 403},
    {"api": "exo:Search-UnifiedAuditLog", "status": 403},
]


@pytest.mark.parametrize("served", [with_faults(TP, AUDIT_DOWN)], indirect=True, ids=["tp-only-cloud-app-events"])
async def test_the_source_that_decided_is_named_when_only_cloud_app_events_answers(
    served: tuple[Scenario, ClientPool],
) -> None:
    scenario, pool = served
    try:
        result = await ActivityEnvironment().run(activities(pool).audit_log, audit_request())
    finally:
        await pool.aclose()
    assert result.source == "cloud_app_events"
    assert [s.split(":")[0] for s in result.failed_sources] == ["graph_audit_log", "search_unified_audit_log"]
    assert [c.actor for c in result.connector_changes] == ["exadmin@contoso.com", "helpdesk.op@contoso.com"]


@pytest.mark.parametrize(
    "served",
    [with_faults(TP, [*AUDIT_DOWN, {"api": "graph:POST /security/runHuntingQuery", "status": 400,
                                    "match": "CloudAppEvents"}])],
    indirect=True, ids=["tp-every-audit-source-down"],
)
async def test_every_audit_source_down_is_evidence_unavailable_never_no_changes(
    client: Client, served: tuple[Scenario, ClientPool]
) -> None:
    scenario, pool = served
    verdict = await probe(client, scenario, pool)
    unavailable = next(f for f in verdict.findings if f.id == "evidence_unavailable")
    assert unavailable.evidence["sources"] == ["audit_log"]
    assert verdict.kind == "needs_review"
    assert not verdict.has("connector_modified") and not verdict.has("other_connector_suspicious")


BRUTEFORCE = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-bruteforced-admin-creates-inbound-connector.yaml"
CERT_SWAP = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-cert-swap-phish-partners-and-staff.yaml"


async def collected_with_only_cloud_app_events(
    client: Client, path: Path, cert_dir: Path
) -> tuple[Evidence, Verdict, EmulatorHandle]:
    scenario = with_faults(path, AUDIT_DOWN)
    with running_emulator(scenario, cert_dir) as emulator:
        pool = pool_for(scenario, emulator.base_url)
        queue = f"evidence-{uuid.uuid4().hex[:8]}"
        try:
            async with Worker(client, task_queue=queue, workflows=[EvidenceCollector], activities=activities(pool).all()):
                collected = await client.execute_workflow(
                    EvidenceCollector.run, case_for(scenario), id=f"collect-{uuid.uuid4()}", task_queue=queue,
                    result_type=Evidence)
        finally:
            await pool.aclose()
    case = case_for(scenario)
    return collected, grading.grade(collected, case.organization, case.thresholds, collected.collected_at), emulator


def hunting_queries(emulator: EmulatorHandle) -> int:
    """Distinct advanced hunting queries the emulator answered (a retried query counts once)."""
    return len({c["body_sha256"] for c in emulator.state.calls_matching(HUNTING)})


async def test_when_only_cloud_app_events_answers_the_same_query_reads_the_admins_sign_ins(
    client: Client, cert_dir: Path
) -> None:
    collected, verdict, emulator = await collected_with_only_cloud_app_events(client, BRUTEFORCE, cert_dir)
    assert collected.changes_source == "cloud_app_events" and not collected.unavailable
    assert verdict.has("admin_bruteforce_success") and verdict.has("connector_created")
    assert [a.upn for a in collected.admins] == ["exadmin@contoso.com"]
    assert collected.admins[0].object_id == "6f1c2a10-0000-4000-8000-000000000001"
    assert hunting_queries(emulator) == 2  # the connector's mail, and the audit records with the sign-ins


async def test_the_worst_path_telemetry_and_cloud_app_events_makes_three_hunting_calls(
    client: Client, cert_dir: Path
) -> None:
    collected, verdict, emulator = await collected_with_only_cloud_app_events(client, CERT_SWAP, cert_dir)
    assert collected.changes_source == "cloud_app_events" and not collected.unavailable
    assert verdict.has("change_by_unexpected_actor")
    assert [a.upn for a in collected.admins] == ["helpdesk.op@contoso.com"]
    assert hunting_queries(emulator) == 3  # telemetry (resolution), mail, audit records with the sign-ins


def other_tenant(path: Path, tenant_id: str, extra_domain: str) -> Scenario:
    data = yaml.safe_load(path.read_text())
    data["tenant"]["id"] = tenant_id
    data["tenant"]["accepted_domains"].append(extra_domain)
    return load_scenario(yaml.safe_dump(data, sort_keys=False))


async def test_concurrent_cases_of_a_tenant_share_one_read_of_its_accepted_domains_and_tenants_never_do(
    client: Client, cert_dir: Path
) -> None:
    first, second = load_scenario(TP), other_tenant(TP, "33333333-4444-5555-6666-777777777777", "fabrikam-only.example")
    with running_emulator(first, cert_dir) as one, running_emulator(second, cert_dir) as two:
        pool = ClientPool([tenant_settings(first, one.base_url), tenant_settings(second, two.base_url)])
        queue = f"evidence-{uuid.uuid4().hex[:8]}"
        try:
            async with Worker(client, task_queue=queue, workflows=[EvidenceCollector], activities=activities(pool).all()):
                collected = await asyncio.gather(*(
                    client.execute_workflow(EvidenceCollector.run, case_for(scenario), id=f"collect-{uuid.uuid4()}",
                                            task_queue=queue, result_type=Evidence)
                    for scenario in (first, first, second, second)
                ))
        finally:
            await pool.aclose()
    assert [len(emulator.state.calls_matching("exo:Get-AcceptedDomain")) for emulator in (one, two)] == [1, 1]
    assert [c.accepted_domains for c in collected] == [
        ["contoso.com", "contoso.onmicrosoft.com"]] * 2 + [["contoso.com", "contoso.onmicrosoft.com", "fabrikam-only.example"]] * 2


def resolve_request(**fields: Any) -> ResolveConnectorInput:
    now = datetime.now(UTC)
    return ResolveConnectorInput(tenant_id=load_scenario(TP).tenant.id, since=now - timedelta(days=7), until=now,
                                 **fields)


@pytest.mark.parametrize("served", [load_scenario(TP)], indirect=True, ids=["tp"])
async def test_the_connector_is_resolved_by_its_name_its_domain_and_never_by_a_name_that_is_gone(
    served: tuple[Scenario, ClientPool],
) -> None:
    scenario, pool = served
    resolve = activities(pool).resolve_connector
    try:
        named = await ActivityEnvironment().run(resolve, resolve_request(connector_name="contoso hybrid"))
        by_domain = await ActivityEnvironment().run(resolve, resolve_request(connector_domain="fabrikam.com"))
        gone = await ActivityEnvironment().run(resolve, resolve_request(connector_name="Deleted Relay"))
        gone_then_ip = await ActivityEnvironment().run(
            resolve, resolve_request(connector_name="Deleted Relay", ip_addresses=["198.51.100.23"]))
    finally:
        await pool.aclose()
    assert (named.connector and named.connector.name, named.method) == ("Contoso Hybrid", "alert_connector_name")
    assert (by_domain.connector and by_domain.connector.name) == "Outbound to Fabrikam (TLS)"
    assert gone.connector is None and gone.method == "none"
    assert (gone_then_ip.connector and gone_then_ip.connector.name) == "Contoso Hybrid"
    assert {c.name for c in named.connectors} == {"Contoso Hybrid", "Outbound to Fabrikam (TLS)"}


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
        stats = await ActivityEnvironment().run(activities(pool).mail_stats, fax_mail_request(scenario))
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
        stats = await ActivityEnvironment().run(activities(pool).mail_stats, fax_mail_request(scenario))
    finally:
        await pool.aclose()
    assert stats.trace_filtered_as_spam is None
    assert stats.junk_or_quarantined == 315
