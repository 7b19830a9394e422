"""Serving the emulator over HTTPS: `serve` (blocking, for the CLI) and `running_emulator` (a
background thread on a free loopback port, for tests and the scenario runner)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from emulator.app import EXO_PAGE_SIZE, create_app
from emulator.holds import Holds
from emulator.scenario import Quotas, Scenario, load_scenario
from emulator.state import TenantState
from emulator.tls import ensure_certificates

START_TIMEOUT = 30.0
SHUTDOWN_GRACE = 1.0


@dataclass(frozen=True)
class EmulatorHandle:
    base_url: str
    """e.g. https://127.0.0.1:51234 — the authority host, Graph base URL and EXO base URL alike."""
    ca_cert: Path
    state: TenantState
    holds: Holds
    """Calls the test keeps in flight (`holds.add("exo:Get-AcceptedDomain")`); released when serving stops."""


def _config(scenario: Scenario, cert_dir: Path, host: str, port: int, credentials: tuple[str, str] | None = None,
            exo_page_size: int = EXO_PAGE_SIZE, quotas: Quotas | None = None) -> tuple[uvicorn.Config, Path]:
    certs = ensure_certificates(cert_dir)
    config = uvicorn.Config(
        create_app(scenario, *credentials, exo_page_size=exo_page_size, quotas=quotas) if credentials
        else create_app(scenario, exo_page_size=exo_page_size, quotas=quotas),
        host=host,
        port=port,
        ssl_certfile=str(certs.server_cert),
        ssl_keyfile=str(certs.server_key),
        log_level="warning",
        lifespan="off",
    )
    return config, certs.ca_cert


def serve(scenario_path: Path | str, host: str = "127.0.0.1", port: int = 8443,
          cert_dir: Path = Path(".quell/certs"), quotas: Quotas | None = None) -> None:
    """Load the scenario and serve it until interrupted (`quotas`: instead of the scenario's)."""
    scenario = load_scenario(Path(scenario_path))
    config, ca_cert = _config(scenario, cert_dir, host, port, quotas=quotas)
    print(f"quell emulator: scenario {scenario.id}, tenant {scenario.tenant.id}")
    print(f"  https://{host}:{port}  (trust {ca_cert}: SSL_CERT_FILE / REQUESTS_CA_BUNDLE)")
    _Server(config).run()


class _Server(uvicorn.Server):
    """uvicorn's server that says when it is up (or gave up), so nobody has to sleep and poll."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Graceful first; then drop connections whose peers never answer the TLS close (idle
        keep-alive clients would otherwise hold the stop for asyncio's 30 s SSL shutdown timeout)."""
        stopping = asyncio.ensure_future(super().shutdown(sockets))
        done, _ = await asyncio.wait({stopping}, timeout=SHUTDOWN_GRACE)
        if not done:
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
        await stopping

    def run_until_exit(self, listener: socket.socket) -> None:
        try:
            self.run(sockets=[listener])
        finally:
            self.ready.set()


@contextmanager
def running_emulator(scenario: Scenario, cert_dir: Path, port: int = 0, credentials: tuple[str, str] | None = None,
                     exo_page_size: int = EXO_PAGE_SIZE, quotas: Quotas | None = None) -> Iterator[EmulatorHandle]:
    """Serve `scenario` on 127.0.0.1 (a free port unless given) in a background thread;
    `credentials` (client id, secret) replace the emulator's default app registration, `quotas`
    the scenario's."""
    config, ca_cert = _config(scenario, cert_dir, "127.0.0.1", port, credentials, exo_page_size, quotas)
    app = config.app
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response waits ~40 ms for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    server = _Server(config)
    thread = threading.Thread(target=server.run_until_exit, args=(listener,), name="quell-emulator", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(START_TIMEOUT) or not server.started:
            raise RuntimeError("the emulator did not start")
        yield EmulatorHandle(f"https://127.0.0.1:{listener.getsockname()[1]}", ca_cert, app.state.tenant,
                             app.state.holds)
    finally:
        app.state.holds.release_all()
        server.should_exit = True
        thread.join()
        listener.close()


@asynccontextmanager
async def serving_emulator(scenario: Scenario, cert_dir: Path, port: int = 0,
                           credentials: tuple[str, str] | None = None, exo_page_size: int = EXO_PAGE_SIZE,
                           quotas: Quotas | None = None) -> AsyncIterator[EmulatorHandle]:
    """`running_emulator` for async callers: start and stop run off the event loop, so the
    clients on this loop can answer the server's TLS close while it stops (a blocking join
    here would hold them, and every other task on the loop, until the close times out)."""
    manager = running_emulator(scenario, cert_dir, port, credentials, exo_page_size, quotas)
    handle = await asyncio.to_thread(manager.__enter__)
    try:
        yield handle
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
