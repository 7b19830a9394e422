"""`quell … --json` as a process: stdout is exactly one JSON document, and the process exits cleanly.

The dev server a scenario run starts prints a banner on the stdout it inherits; the interpreter
used to abort at exit (134) when the Temporal SDK's threads outlived it. Both would show here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from emulator.scenario import load_scenario
from activities import cases
from activities.alert_parsing import parse_alerts
from workers.scenarios import RunOptions, isolated_namespace, tenant_stack
from tests.conftest import PROJECT_SCENARIOS

QUELL = str(Path(sys.executable).parent / "quell")
SCENARIO = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"


def quell(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QUELL, *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=180)


def test_scenario_run_json_prints_only_the_result(tmp_path: Path):
    run = quell("scenario", "run", str(SCENARIO), "--json", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["verdict"], result["case_status"]) == ("true_positive", "completed")
    assert "Fatal Python error" not in run.stderr


async def test_report_json_prints_only_the_report(client, cert_dir, tmp_path: Path):
    scenario = load_scenario(SCENARIO)
    async with isolated_namespace(client) as own, \
            tenant_stack(own, scenario, RunOptions(approval_timeout=300), {}, cert_dir) as stack:
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        case = await cases.open_case(own, cases.case_input(stack.settings, alert), stack.settings.temporal.task_queue)
        try:
            run = await asyncio.to_thread(
                quell, "report", case.id, "--json", "--temporal-address", own.service_client.config.target_host,
                cwd=tmp_path, env={"QUELL_TEMPORAL__NAMESPACE": own.namespace},
            )
        finally:
            await case.terminate("test done")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["case_id"] == case.id
    assert "Fatal Python error" not in run.stderr
