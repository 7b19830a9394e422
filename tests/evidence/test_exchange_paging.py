"""Exchange answers a large result in pages (`@odata.nextLink`); the one InvokeCommand helper
(`ExoClient.invoke`) reads every page, against the emulator over HTTPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.clients import ClientPool
from config.settings import TenantSettings
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET

TP = Path(__file__).parents[2] / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"


async def message_trace(cert_dir: Path, page_size: int) -> tuple[list[dict], int]:
    """Every trace row of the last 10 days through `ExoClient.invoke`, and the requests it took."""
    scenario = load_scenario(TP)
    async with serving_emulator(scenario, cert_dir, exo_page_size=page_size) as emulator:
        pool = ClientPool([TenantSettings(
            tenant_id=scenario.tenant.id, client_id=EMULATOR_CLIENT_ID, client_secret=EMULATOR_CLIENT_SECRET,
            authority_host=emulator.base_url, disable_instance_discovery=True,
            graph_base_url=emulator.base_url, exo_base_url=emulator.base_url,
        )])
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
