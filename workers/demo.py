"""`quell demo`: one real case, end to end, on this machine.

A Temporal dev server with its UI, the tenant emulator loaded with a true-positive scenario,
the worker and the intake service all start here; the alert is posted to intake over HTTP;
the demo prints the case, what waits for approval and the exact commands to approve, then
waits for the analyst (or approves by itself with --auto-approve) and prints the report.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shlex
from datetime import timedelta
from pathlib import Path

import httpx
import typer
import uvicorn
from pydantic import SecretStr
from temporalio.client import Client

from activities import cases
from config.settings import CodecSettings
from emulator.scenario import Scenario, load_scenario
from workers import key_files, scenarios
from workers.analysts import Analysts
from workers.intake import create_app
from workers.temporal_connection import data_converter
from workflows.report import report_markdown
from workflows.types import CaseReport, PendingApproval

DEMO_KEYS = Path(".quell/demo-keys")
TEMPORAL_PORT = 7233
UI_PORT = 8233
INTAKE_PORT = 8088


def write_demo_keys(analysts: Analysts) -> dict[str, Path]:
    """The analysts' private keys of this run as files, for `quell approve --key` by hand."""
    paths = {}
    for account, key in analysts.keys.items():
        paths[account] = DEMO_KEYS / f"{account}.pem"
        paths[account].unlink(missing_ok=True)
        key_files.write_key(paths[account], key)
    return paths


def approval_instructions(case: str, pending: list[PendingApproval], keys: dict[str, Path]) -> str:
    lines = [f"Case {case} waits for approval of:"]
    for p in pending:
        lines.append(f"  {p.action_id}  {p.kind}  {p.target or '-'}  ({p.policy}, plan {p.plan_hash})")
        lines.append(f"      {p.reason}")
    first = pending[0]
    who, key = next(iter(keys.items())) if keys else ("soc1@contoso.com", Path("KEY.pem"))
    sign = (f".venv/bin/quell sign {shlex.quote(case)} {first.action_id} --approve --as {who} --key {key} "
            f"--plan {first.plan_hash}")
    lines += [
        "",
        "Approve from another terminal, one action at a time (signed with the analyst's demo key):",
        f"  .venv/bin/quell approve {shlex.quote(case)} {first.action_id} --as {who} --key {key} "
        f"--temporal-address localhost:{TEMPORAL_PORT}",
        "or with the stock Temporal CLI (a decision signed by `quell sign` counts for 15 minutes):",
        f"  .venv/bin/temporal workflow update execute --address localhost:{TEMPORAL_PORT} "
        f"--workflow-id {shlex.quote(case)} --name decide --input \"$({sign})\"",
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
    # Case data is encrypted under a key made for this run; the UI decodes through the intake's /codec.
    codec = CodecSettings(current="demo", keys={"demo": SecretStr(base64.b64encode(secrets.token_bytes(32)).decode())})
    typer.echo(f"Starting Temporal dev server on localhost:{TEMPORAL_PORT} (UI http://localhost:{UI_PORT}) ...")
    async with await scenarios.start_dev_server(
        converter=data_converter(codec),
        port=TEMPORAL_PORT,
        ui=True,
        ui_port=UI_PORT,
        dev_server_extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{INTAKE_PORT}/codec"],
    ) as env, scenarios.tenant_stack(env.client, scenario, options, {"demo": token}) as stack:
        client = env.client
        typer.echo(f"Tenant emulator ({scenario.id}) at {stack.emulator.base_url}")
        ui_origins = [f"http://localhost:{UI_PORT}", f"http://127.0.0.1:{UI_PORT}"]
        settings = stack.settings.model_copy(update={
            "codec": codec, "intake": stack.settings.intake.model_copy(update={"codec_cors_origins": ui_origins}),
        })

        async def connected() -> Client:
            return client

        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, connected), host="127.0.0.1", port=INTAKE_PORT, log_config=None)
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            case = await post_alert(scenario, token)
            await follow_case(client, case, scenario, auto_approve, stack.analysts)
        finally:
            server.should_exit = True
            await serving


async def post_alert(scenario: Scenario, token: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{INTAKE_PORT}") as http:
        response = await http.post(
            "/v1/alerts",
            params={"tenant": scenario.tenant.id},
            json=scenario.alert,
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
    accepted = response.json()["accepted"][0]
    typer.echo(f"Alert {accepted['alert_id']} accepted by intake: case {accepted['case_id']}")
    return accepted["case_id"]


async def follow_case(
    client: Client, case: str, scenario: Scenario, auto_approve: bool, analysts: Analysts
) -> None:
    """Show what waits for approval once, answer it if asked to, and print the report at the end."""
    result = asyncio.ensure_future(cases.handle(client, case).result())
    shown = False
    while not result.done():
        waiting = await cases.pending(client, case)
        if waiting and not shown:
            typer.echo(approval_instructions(case, waiting, write_demo_keys(analysts)))
            shown = True
        if auto_approve:
            await scenarios.answer_approvals(client, case, scenario, analysts)
        await asyncio.wait([result], timeout=0.2)
    report = CaseReport.model_validate(result.result().model_dump())
    typer.echo("\n" + report_markdown(report))
