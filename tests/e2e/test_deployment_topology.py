"""docker-compose.yml's topology without containers: Temporal on a database file, and the worker and
the intake as separate `quell` processes that share only Temporal, their settings and the codec key.

The alert goes in through the intake's HTTP API, approvals too; the Temporal server is stopped and
started again on the same file while the case waits for its approvals, and the case completes as
the scenario expects. (`temporal server start-dev --db-filename` stands in for the compose file's
server on PostgreSQL: the same durable history across a restart, without a docker engine.)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from emulator.expectations import judge
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from tests.conftest import PROJECT_SCENARIOS, eventually, free_port
from workers.analysts import Analysts, ApiKey
from workers.processes import QUELL
from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, result_json, start_dev_server
from workflows.types import CaseReport

SCENARIO = "tp-hijacked-hybrid-connector"
TOKENS = {name: secrets.token_urlsafe(16) for name in ("defender", "soc1@contoso.com", "soc2@contoso.com")}
API_KEY = ApiKey.generate()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def quell_environment(scenario, emulator_url: str, temporal_port: int, intake_port: int) -> dict[str, str]:
    """What an operator puts in the worker's and the intake's environment (docker-compose.yml's env_file)."""
    tenant = {
        "tenant_id": scenario.tenant.id, "client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET,
        "authority_host": emulator_url, "disable_instance_discovery": True, "graph_base_url": emulator_url,
        "exo_base_url": emulator_url, "organization": scenario.organization.model_dump(mode="json", by_alias=True),
    }
    analysts = {name: {"tenants": [scenario.tenant.id], "approve": True} for name in TOKENS if "@" in name}
    return {
        **os.environ,  # SSL_CERT_FILE: the emulator's CA (cert_dir fixture)
        "QUELL_CONFIG": "/nonexistent/quell.toml",
        "QUELL_LOG_LEVEL": "WARNING",
        "QUELL_TEMPORAL__ADDRESS": f"127.0.0.1:{temporal_port}",
        "QUELL_TEMPORAL__TASK_QUEUE": "quell-topology",
        "QUELL_TENANTS": json.dumps([tenant]),
        # Approvals arrive through the intake, which signs them with its own key in the caller's
        # name; one key counts once, so removal needs one approver here (two-person: tests/workflow).
        "QUELL_APPROVAL": json.dumps({
            "approvers": [a.model_dump() for a in Analysts.generate(["soc1@contoso.com", "soc2@contoso.com"]).approvers()],
            "api_public_key": API_KEY.public_key,
            "by_action": {"classify_alert": "auto", "comment_alert": "auto", "remove_connector": "approve"},
            "expire_after": 600,
        }),
        "QUELL_INTAKE__SIGNING_KEY": API_KEY.private_pem.get_secret_value(),
        "QUELL_CODEC__CURRENT": "k1",
        "QUELL_CODEC__KEYS__K1": base64.b64encode(os.urandom(32)).decode(),
        "QUELL_INTAKE__PORT": str(intake_port),
        "QUELL_INTAKE__API_TOKENS": json.dumps(TOKENS),
        "QUELL_INTAKE__SOURCES": json.dumps({"defender": {"tenants": [scenario.tenant.id]}}),
        "QUELL_INTAKE__ANALYSTS": json.dumps(analysts),
    }


@contextmanager
def quell_processes(env: dict[str, str]) -> Iterator[None]:
    """`quell worker` and `quell intake`, as the compose file's two services run them."""
    worker = subprocess.Popen([QUELL, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    intake = subprocess.Popen([QUELL, "intake"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        stop(intake)
        stop(worker)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def test_worker_and_intake_processes_finish_a_case_across_a_temporal_restart(tmp_path: Path, cert_dir):
    scenario = load_scenario(PROJECT_SCENARIOS / f"{SCENARIO}.yaml")
    db_file, temporal_port, intake_port = tmp_path / "temporal.db", free_port(), free_port()
    async with serving_emulator(scenario, cert_dir) as emulator:
        env = quell_environment(scenario, emulator.base_url, temporal_port, intake_port)
        temporal = await start_dev_server(db_file=db_file, port=temporal_port)
        try:
            with quell_processes(env):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{intake_port}", timeout=30) as intake:
                    case = await _open_case(intake, scenario)
                    waiting = await eventually(lambda: _summary(intake, case),
                                               lambda s: s.get("stage") == "awaiting_approval", timeout=60)
                    assert waiting["pending"] and waiting["status"] == "running"

                    # Temporal goes away while the case waits for people, and comes back on its file.
                    await temporal.shutdown()
                    temporal = await start_dev_server(db_file=db_file, port=temporal_port)

                    closed = await eventually(lambda: _approve_what_waits(intake, case),
                                              lambda s: s.get("status") != "running", timeout=120)
                    assert closed["status"] == "completed" and closed["stage"] == "closed"
                    report = CaseReport.model_validate((await intake.get(
                        f"/v1/cases/{case}/report", headers=bearer("soc1@contoso.com"))).json())
        finally:
            await temporal.shutdown()
        assert judge(scenario.expected, result_json(scenario, report, emulator.state.snapshot(), 1)) == []


async def _open_case(intake: httpx.AsyncClient, scenario) -> str:
    async def healthy() -> bool:
        try:
            return (await intake.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(healthy, bool, timeout=60)
    posted = await intake.post("/v1/alerts", params={"tenant": scenario.tenant.id}, json=scenario.alert,
                               headers=bearer("defender"))
    assert posted.status_code == 202, posted.text
    return posted.json()["accepted"][0]["case_id"]


async def _summary(intake: httpx.AsyncClient, case: str) -> dict[str, Any]:
    """The case as the intake reads it; {} while Temporal is not answering (503)."""
    response = await intake.get(f"/v1/cases/{case}", headers=bearer("soc1@contoso.com"))
    return response.json() if response.status_code == 200 else {}


async def _approve_what_waits(intake: httpx.AsyncClient, case: str) -> dict[str, Any]:
    """Approve every pending action through the intake, each approver with their own token."""
    summary = await _summary(intake, case)
    for request in summary.get("pending", []):
        for approver in ("soc1@contoso.com", "soc2@contoso.com")[: request["still_needed"]]:
            body = {"action_id": request["action_id"], "plan_hash": request["plan_hash"], "approve": True}
            await intake.post(f"/v1/cases/{case}/approvals", json=body, headers=bearer(approver))
    return summary
