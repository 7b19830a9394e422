"""Closing a worker's clients closes every connection they opened to the tenant: the raw Graph
client, Exchange's InvokeCommand and the Graph SDK (whose middleware transport, msgraph-core's
`AsyncGraphTransport`, does not close the transport under it). Checked from the kernel's table
of this machine's TCP connections (/proc/net/tcp*), against the emulator over HTTPS."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from activities.clients import ClientPool
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import emulator_tenant

SCENARIO = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
ESTABLISHED = "01"


def open_connections_to(port: int) -> int:
    """Established TCP connections whose far end is `port` on this machine (the clients' ends)."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            count += remote_port == port and fields[3] == ESTABLISHED
    return count


async def test_closing_the_pool_closes_every_connection_to_the_tenant(cert_dir):
    scenario = load_scenario(SCENARIO)
    async with serving_emulator(scenario, cert_dir) as emulator:
        port = urlsplit(emulator.base_url).port
        assert port is not None
        pool = ClientPool([emulator_tenant(scenario, emulator.base_url)])
        clients = pool.for_tenant(scenario.tenant.id)
        user = scenario.tenant.users[0].userPrincipalName
        assert (await clients.graph.users.by_user_id(user).get()) is not None  # the Graph SDK
        assert (await clients.graph_http.request("GET", "/security/alerts_v2"))["value"]  # raw Graph
        assert await clients.exo.invoke("Get-AcceptedDomain", {})  # InvokeCommand
        assert open_connections_to(port) >= 2

        await pool.aclose()
        assert open_connections_to(port) == 0
