"""`quell doctor` against the dev server and the tenant emulator: clean with every grant, a failed
check naming the exact grant when the app lacks one, and a configuration that needs less."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.principals import GRAPH
from emulator.scenario import load_scenario
from emulator.server import running_emulator
from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, register_namespace

ROOT = Path(__file__).parents[2]
QUELL = str(Path(sys.executable).parent / "quell")
SCENARIO = (PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").read_text()
KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def tenant(cert_dir, request) -> Iterator[tuple[str, str]]:
    """The emulator, its app registration lacking the grants a test passes (indirect parameter)."""
    withheld = getattr(request, "param", [])
    scenario = load_scenario(SCENARIO + f"\napp:\n  withhold: {json.dumps(withheld)}\n")
    with running_emulator(scenario, cert_dir) as emulator:
        yield scenario.tenant.id, emulator.base_url


def config(tmp_path: Path, dev_server, tenant: tuple[str, str], extra: str = "", namespace: str = "default") -> Path:
    tenant_id, url = tenant
    path = tmp_path / "quell.toml"
    path.write_text(f"""{extra}
[temporal]
address = "{dev_server.client.service_client.config.target_host}"
namespace = "{namespace}"
[codec]
current = "k1"
keys = {{k1 = "{KEY}"}}
[[tenants]]
tenant_id = "{tenant_id}"
client_id = "{EMULATOR_CLIENT_ID}"
client_secret = "{EMULATOR_CLIENT_SECRET}"
authority_host = "{url}"
disable_instance_discovery = true
graph_base_url = "{url}"
exo_base_url = "{url}"
""")
    return path


def doctor(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUELL_CONFIG": str(path)}
    return subprocess.run([QUELL, "doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_with_every_grant_every_check_passes(tmp_path, dev_server, tenant):
    ran = doctor(config(tmp_path, dev_server, tenant), "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)  # one JSON document, nothing else on stdout
    assert report["ok"] is True
    assert [c for c in report["checks"] if c["status"] != "ok"] == []
    names = by_name(report)
    assert {"reachable", "namespace", "search attribute QuellTenant", "payload encryption", "token for Microsoft Graph",
            "token for Exchange Online", "Microsoft Graph application permission User.RevokeSessions.All",
            "Office 365 Exchange Online application permission Exchange.ManageAsApp",
            "Entra directory role of the app Exchange Administrator"} <= set(names)
    # SecurityAlert.ReadWrite.All, which the app holds, includes the poller's SecurityAlert.Read.All.
    assert names["Microsoft Graph application permission SecurityAlert.Read.All"]["status"] == "ok"
    assert EMULATOR_CLIENT_SECRET not in ran.stdout + ran.stderr


@pytest.mark.parametrize("tenant", [["User.RevokeSessions.All"]], indirect=True)
def test_a_withheld_graph_permission_fails_with_the_assignment_to_add(tmp_path, dev_server, tenant):
    ran = doctor(config(tmp_path, dev_server, tenant), "--json")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    failed = [c for c in report["checks"] if c["status"] != "ok"]
    assert [c["name"] for c in failed] == ["Microsoft Graph application permission User.RevokeSessions.All"]
    assert failed[0]["status"] == "fail" and "action revoke_sessions" in failed[0]["detail"]
    fix = failed[0]["fix"]
    assert fix.startswith(f"az rest --method POST --url '{tenant[1]}/v1.0/servicePrincipals/")
    body = json.loads(fix.split("--body '")[1].rstrip("'"))
    assert body["appRoleId"] == GRAPH.role_id("User.RevokeSessions.All")
    assert body["resourceId"] == GRAPH.object_id


@pytest.mark.parametrize("tenant", [["User.RevokeSessions.All"]], indirect=True)
def test_a_configuration_that_never_revokes_sessions_does_not_need_that_permission(tmp_path, dev_server, tenant):
    ran = doctor(config(tmp_path, dev_server, tenant, "[approval.by_action]\nrevoke_sessions = \"never\""))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "User.RevokeSessions.All" not in ran.stdout
    assert ran.stdout.strip().endswith("0 warnings, 0 failed")


@pytest.mark.parametrize("tenant", [["Exchange Administrator", "Exchange.ManageAsApp"]], indirect=True)
def test_withheld_exchange_grants_fail_with_the_role_assignment_and_app_role_to_add(tmp_path, dev_server, tenant):
    ran = doctor(config(tmp_path, dev_server, tenant))
    assert ran.returncode == 1
    assert "FAIL  tenant " in ran.stdout
    assert "Entra directory role of the app Exchange Administrator: missing" in ran.stdout
    assert '"roleDefinitionId":"29232cdf-9323-42fd-ade2-1d097af3e4de"' in ran.stdout
    assert "Office 365 Exchange Online application permission Exchange.ManageAsApp: missing" in ran.stdout


@pytest.mark.parametrize("tenant", [["Application.Read.All"]], indirect=True)
def test_without_application_read_all_doctor_judges_by_the_tokens_and_says_what_it_could_not_verify(
        tmp_path, dev_server, tenant):
    ran = doctor(config(tmp_path, dev_server, tenant), "--json")
    assert ran.returncode == 0, ran.stdout
    names = by_name(json.loads(ran.stdout))
    assert names["app grants readable"]["status"] == "warn"
    assert "Application.Read.All" in names["app grants readable"]["fix"]
    assert names["Microsoft Graph application permission User.RevokeSessions.All"]["status"] == "ok"
    assert names["Entra directory role of the app Exchange Administrator"]["status"] == "warn"


async def test_a_namespace_without_quells_search_attributes_fails_with_the_commands(tmp_path, dev_server, cert_dir):
    namespace = f"doctor-{uuid.uuid4().hex[:8]}"
    await register_namespace(dev_server.client, namespace)
    ran = doctor(config(tmp_path, dev_server, ("t", "https://127.0.0.1:1"), namespace=namespace), "--json")
    assert ran.returncode == 1 and ran.stdout, ran.stderr
    names = by_name(json.loads(ran.stdout))
    assert names["namespace"]["status"] == "ok"
    assert names["search attribute QuellPendingApproval"]["fix"] == (
        f"temporal operator search-attribute create --namespace {namespace} --name QuellPendingApproval --type Bool")
    assert names["token for Microsoft Graph"]["status"] == "fail"


def test_render_permissions_prints_docs_permissions_md():
    ran = subprocess.run([QUELL, "doctor", "--render-permissions"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "QUELL_CONFIG": "/nonexistent"})
    assert ran.returncode == 0
    assert ran.stdout == (ROOT / "docs" / "permissions.md").read_text()
