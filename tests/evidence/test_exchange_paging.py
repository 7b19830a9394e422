"""Exchange answers a large result in pages (`@odata.nextLink`); the one InvokeCommand helper
(`ExoClient.invoke`) reads every page, against the emulator over HTTPS. Search-UnifiedAuditLog
pages a search through a session: the audit activity reads every session page once, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from temporalio.testing import ActivityEnvironment

from activities.clients import ClientPool
from activities.evidence import EvidenceActivities
from activities.tenant_cache import TenantCache
from config.settings import TenantSettings
from emulator.scenario import Scenario, load_scenario
from emulator.server import serving_emulator
from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
from workflows.audit import AUDIT_OPERATIONS
from workflows.types import AuditLogInput

TP = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
EXTRA_RECORDS = 6500


def pool_for(scenario: Scenario, base_url: str) -> ClientPool:
    return ClientPool([TenantSettings(
        tenant_id=scenario.tenant.id, client_id=EMULATOR_CLIENT_ID, client_secret=EMULATOR_CLIENT_SECRET,
        authority_host=base_url, disable_instance_discovery=True,
        graph_base_url=base_url, exo_base_url=base_url,
    )])


async def message_trace(cert_dir: Path, page_size: int) -> tuple[list[dict], int]:
    """Every trace row of the last 10 days through `ExoClient.invoke`, and the requests it took."""
    scenario = load_scenario(TP)
    async with serving_emulator(scenario, cert_dir, exo_page_size=page_size) as emulator:
        pool = pool_for(scenario, emulator.base_url)
        now = datetime.now(UTC)
        try:
            rows = await pool.for_tenant(scenario.tenant.id).exo.invoke("Get-MessageTraceV2", {
                "StartDate": (now - timedelta(days=10)).isoformat(), "EndDate": now.isoformat(), "ResultSize": 5000,
            })
        finally:
            await pool.aclose()
        return rows, len(emulator.state.calls_matching("exo:Get-MessageTraceV2"))


async def test_every_page_of_a_large_result_is_read(cert_dir: Path) -> None:
    whole, requests = await message_trace(cert_dir, page_size=5000)
    assert requests == 1 and len(whole) > 1000  # more than one page of Exchange's 1000
    paged, requests = await message_trace(cert_dir, page_size=400)
    assert requests == -(-len(whole) // 400)
    assert [r["MessageTraceId"] for r in paged] == [r["MessageTraceId"] for r in whole]
    assert [r["Index"] for r in paged] == list(range(len(whole)))


def with_many_connector_records(path: Path, count: int) -> Scenario:
    """The scenario with `count` more Set-InboundConnector records, one a minute back from its `now`,
    and the Graph audit log query forbidden (so Search-UnifiedAuditLog answers)."""
    data = yaml.safe_load(path.read_text())
    now = datetime.fromisoformat(str(data["now"]).replace("Z", "+00:00"))
    data["audit_log"] += [
        {"CreationDate": (now - timedelta(minutes=10 + i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "Operation": "Set-InboundConnector", "UserIds": "exadmin@contoso.com", "RecordType": "ExchangeAdmin",
         "AuditData": {"Id": f"00000000-0000-4000-8000-{i:012d}", "ObjectId": "Contoso Hybrid", "ResultStatus": "True",
                       "Parameters": [{"Name": "Identity", "Value": "Contoso Hybrid"},
                                      {"Name": "Comment", "Value": f"note {i}"}]}}
        for i in range(count)
    ]
    data["faults"] = [{"api": "graph:POST /security/auditLog/queries", "status": 403}]
    return load_scenario(yaml.safe_dump(data, sort_keys=False))


async def test_a_unified_audit_log_search_of_more_than_5000_records_arrives_whole_in_order_and_read_once(
    cert_dir: Path,
) -> None:
    scenario = with_many_connector_records(TP, EXTRA_RECORDS)
    async with serving_emulator(scenario, cert_dir) as emulator:
        pool = pool_for(scenario, emulator.base_url)
        now = datetime.now(UTC)
        request = AuditLogInput(tenant_id=scenario.tenant.id, since=now - timedelta(days=90),
                                lookback_start=now - timedelta(days=7), until=now)
        try:
            log = await ActivityEnvironment().run(
                EvidenceActivities(pool, TenantCache(timedelta(0))).audit_log, request)
        finally:
            await pool.aclose()
        calls = emulator.state.calls_matching("exo:Search-UnifiedAuditLog")

    assert log.source == "search_unified_audit_log"
    added = [c for c in log.connector_changes if "Comment" in c.parameters]
    assert len(added) == len({c.parameters["Comment"] for c in added}) == EXTRA_RECORDS  # each once, none lost
    assert len(log.connector_changes) == EXTRA_RECORDS + 2  # and the scenario's own two
    matching = len([r for r in scenario.audit_log if r.Operation in AUDIT_OPERATIONS])
    # One session: 5,000 records, then the rest (Exchange's 1,000-object InvokeCommand pages within each);
    # every record once, ResultIndex 1, 2, ... across the calls, and no call after the last record.
    sessions = {c["parameters"]["SessionId"] for c in calls}
    assert len(sessions) == 1 and all(c["parameters"]["SessionCommand"] == "ReturnLargeSet" for c in calls)
    ranges = [c["result_index"] for c in calls]
    served = [i for first, last in ranges for i in range(first, last + 1)]
    assert len(ranges) == 7 and served == list(range(1, matching + 1))
    assert [c["query"] for c in calls] == ["", "$skiptoken=1000", "$skiptoken=2000", "$skiptoken=3000",
                                           "$skiptoken=4000", "", "$skiptoken=1000"]
