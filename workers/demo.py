"""`quell demo`: one real case, end to end, on this machine.

A Temporal dev server with its UI, the tenant emulator loaded with a true-positive scenario,
the worker and the intake service all start here; the alert is posted to intake over HTTP;
the demo prints the case, what waits for approval and the exact commands to approve, then
waits for the analyst (or approves by itself with --auto-approve) and prints the report.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
from datetime import timedelta
from pathlib import Path

import httpx
import typer
import uvicorn
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.clients import ClientPool
from emulator.scenario import load_scenario
from emulator.server import running_emulator
from workers import cases, scenarios
from workers.intake import create_app
from workers.worker import new_worker
from workflows import search_attributes as sa
from workflows.report import report_markdown
from workflows.types import CaseReport

TEMPORAL_PORT = 7233
UI_PORT = 8233
INTAKE_PORT = 8088


def approval_instructions(case: str, client: Client, pending: list, approvers: list[str]) -> str:
    lines = [f"Case {case} waits for approval of:"]
    for p in pending:
        lines.append(f"  {p.action_id}  {p.kind}  {p.target or '-'}  ({p.policy}, plan {p.plan_hash})")
        lines.append(f"      {p.reason}")
    first = pending[0]
    who = approvers[0] if approvers else "soc1@contoso.com"
    lines += [
        "",
        "Approve from another terminal, one action at a time:",
        f"  .venv/bin/quell approve {shlex.quote(case)} {first.action_id} --as {who} "
        f"--temporal-address localhost:{TEMPORAL_PORT}",
        "or with the stock Temporal CLI:",
        f"  .venv/bin/temporal workflow update execute --address localhost:{TEMPORAL_PORT} "
        f"--workflow-id {shlex.quote(case)} --name decide --input "
        + shlex.quote(
            f'{{"action_id": "{first.action_id}", "approver": "{who}", "plan_hash": "{first.plan_hash}", "approve": true}}'
        ),
        "List what still waits:",
        f"  .venv/bin/quell pending --temporal-address localhost:{TEMPORAL_PORT}",
        "",
        f"Temporal UI: http://localhost:{UI_PORT}/namespaces/default/workflows",
    ]
    return "\n".join(lines)


async def run_demo(scenario_path: Path, auto_approve: bool) -> None:
    scenarios.trust_emulator_ca()
    scenario = load_scenario(scenario_path)
    token = secrets.token_urlsafe(24)
    options = scenarios.RunOptions(approval_timeout=timedelta(hours=1).total_seconds())
    typer.echo(f"Starting Temporal dev server on localhost:{TEMPORAL_PORT} (UI http://localhost:{UI_PORT}) ...")
    async with await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_existing_path=scenarios.temporal_binary("temporal"),
        port=TEMPORAL_PORT,
        ui=True,
        ui_port=UI_PORT,
    ) as env, running_emulator(scenario, scenarios.CERT_DIR) as emulator:
        client = env.client
        settings = scenarios.scenario_settings(scenario, emulator.base_url, options, token)
        typer.echo(f"Tenant emulator ({scenario.id}) at {emulator.base_url}")
        pool = ClientPool(settings.tenants)

        async def connect() -> Client:
            return client

        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, connect), host="127.0.0.1", port=INTAKE_PORT, log_config=None)
        )
        serving = asyncio.create_task(server.serve())
        try:
            async with new_worker(client, settings, pool):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{INTAKE_PORT}") as http:
                    while not server.started:
                        await asyncio.sleep(0.05)
                    response = await http.post(
                        "/v1/alerts",
                        params={"tenant": scenario.tenant.id},
                        json=scenario.alert,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    response.raise_for_status()
                case = response.json()["case_id"]
                typer.echo(f"Alert {response.json()['alert_id']} accepted by intake: case {case}")
                result = asyncio.ensure_future(cases.handle(client, case).result())
                shown = False
                while not result.done():
                    waiting = await cases.pending(client, case)
                    if waiting and not shown:
                        approvers = scenario.approvals.approvers if scenario.approvals else []
                        typer.echo(approval_instructions(case, client, waiting, approvers))
                        shown = True
                    if auto_approve:
                        await scenarios.answer_approvals(client, case, scenario)
                    await asyncio.wait([result], timeout=0.2)
                report = CaseReport.model_validate(result.result().model_dump())
                typer.echo("\n" + report_markdown(report))
        finally:
            server.should_exit = True
            await serving
            await pool.aclose()
