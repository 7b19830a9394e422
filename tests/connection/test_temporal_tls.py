"""Temporal behind a TLS-terminating gRPC proxy that wants a client certificate (nginx, `ssl_verify_client on`).

A worker and the intake connected with quell's settings (server CA, server name, client
certificate) run a scenario case through the proxy; a client without the certificate, or one
that dials the proxy without the server-name override, is refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings, TemporalSettings
from emulator.expectations import judge
from emulator.scenario import load_scenario
from tests.conftest import PROJECT_SCENARIOS
from tests.connection.pki import Pki, make_pki
from workers.scenarios import RunOptions, run_scenario
from workers.temporal_connection import connect

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
SERVER_NAME = "temporal.quell.test"
READY_WITHIN = 10.0

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nginx_conf(directory: Path, port: int, upstream: str, pki: Pki) -> str:
    temp = "\n".join(f"  {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
  access_log {directory / "access.log"};
{temp}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {pki.server_cert};
    ssl_certificate_key {pki.server_key};
    ssl_client_certificate {pki.ca_cert};
    ssl_verify_client on;
    client_max_body_size 0;
    location / {{
      grpc_pass grpc://{upstream};
      grpc_read_timeout 300s;   # long polls of the worker last about a minute
      grpc_send_timeout 300s;
    }}
  }}
}}
"""


@dataclass(frozen=True)
class Proxy:
    address: str
    access_log: Path


@contextmanager
def grpc_tls_proxy(directory: Path, upstream: str, pki: Pki) -> Iterator[Proxy]:
    port = _free_port()
    conf = directory / "nginx.conf"
    conf.write_text(_nginx_conf(directory, port, upstream, pki))
    proxy = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + READY_WITHIN
        while True:
            if proxy.poll() is not None:
                raise RuntimeError(f"nginx exited {proxy.returncode}: {proxy.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen on {port} within {READY_WITHIN}s") from None
                time.sleep(0.05)
        yield Proxy(f"127.0.0.1:{port}", directory / "access.log")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), SERVER_NAME)


@pytest.fixture(scope="module")
def proxy(dev_server: WorkflowEnvironment, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream = dev_server.client.service_client.config.target_host
    with grpc_tls_proxy(tmp_path_factory.mktemp("nginx"), upstream, pki) as running:
        yield running


def tls_settings(proxy: Proxy, pki: Pki, **overrides: object) -> Settings:
    temporal = {
        "address": proxy.address,
        "server_ca_cert_path": pki.ca_cert,
        "server_name": SERVER_NAME,
        "client_cert_path": pki.client_cert,
        "client_key_path": pki.client_key,
        **overrides,
    }
    return Settings(temporal=TemporalSettings.model_validate(temporal))


async def test_a_case_runs_through_the_mtls_proxy(proxy, pki, cert_dir):
    client = await connect(tls_settings(proxy, pki))
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    result = await run_scenario(client, scenario, RunOptions(cert_dir=cert_dir))
    assert judge(scenario.expected, result) == []
    # The worker's answers and the intake's case start went through the proxy, not around it.
    log = proxy.access_log.read_text()
    assert 'WorkflowService/RespondWorkflowTaskCompleted HTTP/2.0" 200' in log
    assert 'WorkflowService/SignalWithStartWorkflowExecution HTTP/2.0" 200' in log


@pytest.mark.parametrize(
    ("missing", "refusal"),
    [
        # nginx answers 400 "No required SSL certificate was sent" to the gRPC call
        ({"client_cert_path": None, "client_key_path": None}, "400 Bad Request"),
        ({"server_name": None}, "NotValidForName"),  # the proxy's certificate names no IP
        ({"server_ca_cert_path": None}, "UnknownIssuer"),  # the system roots do not know the test CA
    ],
    ids=["no-client-certificate", "no-server-name", "no-server-ca"],
)
async def test_a_client_missing_a_tls_setting_is_refused(proxy, pki, missing, refusal):
    with pytest.raises(RuntimeError, match=refusal):
        await connect(tls_settings(proxy, pki, **missing))
