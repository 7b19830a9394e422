"""Two tenants in one deployment: each with its own emulator, app registration and organization.
A case (and a poller pass) of one tenant never calls the other tenant's APIs."""

from __future__ import annotations

from datetime import timedelta

from pydantic import SecretStr
from temporalio.client import Client

from activities import cases
from activities.clients import ClientPool
from config.settings import IntakeSettings, SourceGrant, TenantSettings
from emulator.server import serving_emulator
from workers.intake import create_app
from workers.scenarios import RunOptions, scenario_settings
from workers.worker import new_worker
from workflows.poller import AlertPollerWorkflow
from workflows.types import PollerInput
from workflows.types import Organization
from tests.intake.conftest import DEFENDER, TOKENS, intake_client, scenario

TENANT_B = "22222222-3333-4444-5555-666666666666"
B_CREDENTIALS = ("quell-tenant-b", "tenant-b-secret")


async def test_cases_of_two_tenants_stay_in_their_own_tenant(client, cert_dir):
    found_a = scenario("tp-hijacked-hybrid-connector")
    found_b = found_a.model_copy(update={"tenant": found_a.tenant.model_copy(update={"id": TENANT_B})})
    tenant_a = found_a.tenant.id
    # Tenant B's organization knows the relay IP and the acting account: its case is no true positive.
    org_b = Organization(on_premises_ip_ranges=["203.0.113.0/28", "198.51.100.0/24"],
                         connector_admins=["exadmin@contoso.com", "helpdesk.op@contoso.com"])
    async with serving_emulator(found_a, cert_dir) as emu_a, serving_emulator(found_b, cert_dir, credentials=B_CREDENTIALS) as emu_b:
        settings = scenario_settings(found_a, emu_a.base_url, RunOptions(approval_timeout=1.0), TOKENS)
        tenant_b = TenantSettings(
            tenant_id=TENANT_B, client_id=B_CREDENTIALS[0], client_secret=SecretStr(B_CREDENTIALS[1]),
            authority_host=emu_b.base_url, disable_instance_discovery=True,
            graph_base_url=emu_b.base_url, exo_base_url=emu_b.base_url, organization=org_b,
        )
        # The Defender relay posts for both tenants; tenant A's own relay for tenant A only.
        intake_settings = IntakeSettings(
            api_tokens={"defender": SecretStr(TOKENS["defender"]), "relay-a": SecretStr("tok-relay-a")},
            sources={"defender": SourceGrant(tenants=[tenant_a, TENANT_B]), "relay-a": SourceGrant(tenants=[tenant_a])},
        )
        settings = settings.model_copy(
            update={"tenants": [*settings.tenants, tenant_b], "mode": "dry_run", "intake": intake_settings})
        pool = ClientPool(settings.tenants)

        async def connect() -> Client:
            return client

        try:
            async with new_worker(client, settings, pool), intake_client(create_app(settings, connect)) as intake:
                # Tenant A's alert → tenant A's case, on tenant A's emulator only.
                posted = await intake.post("/v1/alerts", params={"tenant": tenant_a}, json=found_a.alert, headers=DEFENDER)
                case_a = posted.json()["accepted"][0]["case_id"]
                report_a = await cases.handle(client, case_a).result()
                assert report_a.tenant_id == tenant_a and report_a.verdict == "true_positive"
                assert emu_a.state.calls and emu_b.state.calls == []

                # Tenant A's relay may not file alerts for tenant B, and is not told more than that.
                refused = await intake.post("/v1/alerts", params={"tenant": TENANT_B}, json=found_b.alert,
                                            headers={"Authorization": "Bearer tok-relay-a"})
                assert refused.status_code == 403 and TENANT_B not in refused.text
                assert found_b.alert["id"] not in refused.text

                # The same alert for tenant B: another case id, B's credentials, B's organization.
                posted = await intake.post("/v1/alerts", params={"tenant": TENANT_B}, json=found_b.alert, headers=DEFENDER)
                case_b = posted.json()["accepted"][0]["case_id"]
                assert case_b != case_a and TENANT_B in case_b
                calls_a = len(emu_a.state.calls)
                report_b = await cases.handle(client, case_b).result()
                assert report_b.tenant_id == TENANT_B and report_b.verdict != "true_positive"
                assert emu_b.state.calls and len(emu_a.state.calls) == calls_a
                assert all(c["status"] < 400 for c in emu_b.state.calls)  # B's own app registration works

                # Tenant A's poller reads tenant A's alerts only.
                calls_b = len(emu_b.state.calls)
                await client.execute_workflow(
                    AlertPollerWorkflow.run, PollerInput(tenant_id=tenant_a, initial_lookback=timedelta(days=7)),
                    id=f"alert-poller/{tenant_a}/multi-tenant-test", task_queue=settings.temporal.task_queue,
                )
                assert len(emu_b.state.calls) == calls_b
                assert emu_a.state.calls_matching("graph:GET /security/alerts_v2")

                # An alert that names tenant B cannot be filed under tenant A.
                crossed = await intake.post(
                    "/v1/alerts", params={"tenant": tenant_a}, json={**found_a.alert, "tenantId": TENANT_B}, headers=DEFENDER
                )
                assert crossed.status_code == 422 and "another tenant" in crossed.json()["detail"]
        finally:
            await pool.aclose()
