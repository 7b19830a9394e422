"""Temporal behind a TLS-terminating gRPC proxy that wants a client certificate (nginx, `ssl_verify_client on`).

A worker and the intake connected with quell's settings (server CA, server name, client
certificate) run a scenario case through the proxy; a client without the certificate, the
server-name override or the CA is refused. A second listener stands in for Temporal Cloud: it
forwards only calls that carry the configured API key as a bearer token.
"""

from __future__ import annotations

import os
import secrets
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
from tests.conftest import PROJECT_SCENARIOS, free_port
from tests.connection.pki import Pki, make_pki
from workers.scenarios import RunOptions, run_scenario
from workers.temporal_connection import connect

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
SERVER_NAME = "temporal.quell.test"
READY_WITHIN = 10.0
API_KEY = "test-api-key-" + secrets.token_hex(8)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)")



def _nginx_conf(directory: Path, ports: tuple[int, int], upstream: str, pki: Pki) -> str:
    temp = "\n".join(f"  {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    tls = f"ssl_certificate {pki.server_cert}; ssl_certificate_key {pki.server_key}; client_max_body_size 0;"
    # Long polls of the worker last about a minute.
    forward = f"location / {{ grpc_pass grpc://{upstream}; grpc_read_timeout 300s; grpc_send_timeout 300s; }}"
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
  server {{  # mTLS: a client certificate from the test CA or nothing
    listen 127.0.0.1:{ports[0]} ssl http2;
    {tls}
    ssl_client_certificate {pki.ca_cert};
    ssl_verify_client on;
    {forward}
  }}
  server {{  # as Temporal Cloud with an API key: TLS, and the key as a bearer token
    listen 127.0.0.1:{ports[1]} ssl http2;
    {tls}
    if ($http_authorization != "Bearer {API_KEY}") {{ return 401; }}
    {forward}
  }}
}}
"""


@dataclass(frozen=True)
class Proxy:
    mtls_address: str
    api_key_address: str
    access_log: Path


def _wait_until_listening(proxy: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while True:
        if proxy.poll() is not None:
            assert proxy.stderr is not None
            raise RuntimeError(f"nginx exited {proxy.returncode}: {proxy.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen on {port} within {READY_WITHIN}s") from None
            time.sleep(0.05)


@contextmanager
def grpc_tls_proxy(directory: Path, upstream: str, pki: Pki) -> Iterator[Proxy]:
    ports = (free_port(), free_port())
    conf = directory / "nginx.conf"
    conf.write_text(_nginx_conf(directory, ports, upstream, pki))
    proxy = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        for port in ports:
            _wait_until_listening(proxy, port)
        yield Proxy(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", directory / "access.log")
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
        "address": proxy.mtls_address,
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


async def test_an_api_key_goes_as_a_bearer_token_over_tls(proxy, pki):
    """What Temporal Cloud checks, checked by the proxy: the key arrives, and only over TLS."""
    cloud = {"address": proxy.api_key_address, "server_ca_cert_path": pki.ca_cert, "server_name": SERVER_NAME}
    client = await connect(Settings(temporal=TemporalSettings.model_validate({**cloud, "api_key": API_KEY})))
    assert (await client.count_workflows()).count >= 0
    with pytest.raises(RuntimeError, match="401") as refused:
        await connect(Settings(temporal=TemporalSettings.model_validate({**cloud, "api_key": "wrong-key-s3cr3t"})))
    assert "s3cr3t" not in str(refused.value)
