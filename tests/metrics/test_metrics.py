"""Metrics after one real case: intake and worker on a Prometheus runtime, the dev server, the
emulator; the scrape counts what the report says happened. Cards reach a local webhook too."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import jsonschema
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from activities import cases
from activities.clients import ClientPool
from config.settings import CodecSettings, MetricsSettings, NotifySettings
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from tests.conftest import PROJECT_SCENARIOS, eventually, free_port
from tests.metrics.prometheus import scrape
from tests.notify.receiver import webhook_receiver
from tests.notify.test_cards import ADAPTIVE_CARD, BLOCK_KIT
from workers.intake import create_app
from workers.metrics import PendingApprovalGauges, prometheus_runtime
from workers.scenarios import (
    RunOptions,
    answer_approvals,
    isolated_namespace,
    scenario_analysts,
    scenario_settings,
)
from workers.temporal_connection import data_converter
from workers.worker import new_worker
from workflows.types import CaseReport

TOKEN = "tok-metrics"



@pytest.fixture
def hook() -> Iterator:
    with webhook_receiver() as received:
        yield received


async def test_a_real_case_shows_in_the_metrics(dev_server, cert_dir, hook):
    port = free_port()
    runtime = prometheus_runtime(MetricsSettings(port=port))
    assert runtime is not None
    target = dev_server.client.service_client.config.target_host
    base = await Client.connect(target, runtime=runtime, data_converter=data_converter(CodecSettings()))
    text = (PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").read_text()
    scenario = load_scenario(text.replace("da637f1e2c3b4a5d6e7f80910", f"da637f1e2c3b4a5d6e7f80910-{uuid.uuid4().hex[:6]}"))
    async with isolated_namespace(base) as client, serving_emulator(scenario, cert_dir) as emulator:
        analysts = scenario_analysts(scenario)
        settings = scenario_settings(
            scenario, emulator.base_url, RunOptions(approval_timeout=120), {"soc": TOKEN}, analysts
        )
        settings.notify = NotifySettings(teams_webhook=SecretStr(f"{hook.base_url}/teams"),
                                         slack_webhook=SecretStr(f"{hook.base_url}/slack"),
                                         approval_url="https://soc.contoso.com/quell/{case_id}/{action_id}")
        pool = ClientPool(settings.tenants)

        async def connect() -> Client:
            return client

        intake = create_app(settings, connect, meter=runtime.metric_meter)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with new_worker(client, settings, pool), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=intake), base_url="http://intake"
            ) as http:
                posted = await http.post("/v1/alerts", params={"tenant": scenario.tenant.id}, json=scenario.alert,
                                         headers=headers)
                assert posted.status_code == 202, posted.text
                assert (await http.post("/v1/alerts", content=b"{not json", headers=headers)).status_code == 400
                assert (await http.post("/v1/alerts", json=scenario.alert)).status_code == 401
                case = posted.json()["accepted"][0]["case_id"]

                waiting = await eventually(lambda: cases.pending(client, case), bool, timeout=60)
                await PendingApprovalGauges(client, runtime.metric_meter, settings.approval.expire_after).refresh()
                during = await scrape(port)
                for kind, count in Counter(p.kind for p in waiting).items():
                    assert during.value("quell_approvals_pending", kind=kind) == count
                assert during.value("quell_approvals_pending", kind="remove_connector") == 0
                assert during.value("quell_approval_oldest_wait_seconds") >= 0

                result = asyncio.ensure_future(cases.handle(client, case).result())
                async with asyncio.timeout(120):
                    while not result.done():
                        await answer_approvals(client, case, scenario, analysts)
                        await asyncio.wait([result], timeout=0.1)
                report = CaseReport.model_validate(result.result().model_dump())
        finally:
            await pool.aclose()

    after = await scrape(port)
    tenant = scenario.tenant.id
    assert after.value("quell_alerts_received_total", tenant=tenant, outcome="case") == 1
    assert after.value("quell_alerts_refused_total", reason="malformed") == 1
    assert after.value("quell_alerts_refused_total", reason="unauthenticated") == 1
    assert after.value("quell_cases_started_total", tenant=tenant, workflow_type="connector-case") == 1
    assert after.value("quell_cases_closed_total", verdict=report.verdict, status=report.case_status) == 1
    assert after.value("quell_time_to_verdict_count", verdict=report.verdict) == 1
    for (kind, status), count in Counter((r.action.kind, r.status) for r in report.actions).items():
        assert after.value("quell_actions_total", kind=kind, status=status) == count, (kind, status)
    assert after.value("quell_actions_total", kind="revert_connector_change", status="done") == 1
    assert after.value("quell_evidence_unavailable_total") == 0
    assert {"temporal_workflow_completed_total", "temporal_activity_execution_latency"} & after.names()

    requested = [b for path, b in hook.posts if path == "/teams"]
    assert requested, "no approval card reached the Teams webhook"
    card = requested[0]["attachments"][0]["content"]
    jsonschema.validate(card, ADAPTIVE_CARD)
    assert report.plan_hash and report.plan_hash in str(card)
    for body in hook.bodies("/slack"):
        jsonschema.validate(body, BLOCK_KIT)
