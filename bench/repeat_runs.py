"""Run quell's CLI and the full test suite N times in a row and say how each run ended.

Each round runs, as separate processes:
1. `quell scenario run <tp scenario> --json` (its own embedded dev server);
2. against a dev server this script starts, with a live case waiting for approval (a worker and
   the emulator run in this process, a fresh namespace per round): `quell cases`,
   `quell pending`, `quell report <case> --json`, `quell approve <case> <action> --as <analyst>`;
3. the full test suite (`python -m pytest -q -p no:cacheprovider`), unless --no-suite.

A run is clean when it exits as expected (0), prints no "Fatal Python error" and no
"Segmentation fault", and a `--json` run's whole stdout is one JSON document. The output of an
unclean run is kept in the log directory printed at the end. Exits 1 if any run was unclean.

Run: `.venv/bin/python -m bench.repeat_runs [-n 5] [--no-suite]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emulator.scenario import load_scenario
from activities import cases
from activities.alert_parsing import parse_alerts
from workers.key_files import write_key
from workers.cli import exit_now, temporal_core_logs_to_stderr
from workers.logging import configure_logging
from workers.scenarios import RunOptions, isolated_namespace, start_dev_server, tenant_stack, trust_emulator_ca

ROOT = Path(__file__).parents[1]
SCENARIO = ROOT / "emulator" / "scenarios" / "tp-hijacked-hybrid-connector.yaml"
QUELL = str(Path(sys.executable).parent / "quell")
CRASH_MARKERS = ("Fatal Python error", "Segmentation fault")
PENDING_TIMEOUT = 60.0


@dataclass
class Run:
    round: int
    name: str
    exit_code: int
    problems: list[str]

    @property
    def clean(self) -> bool:
        return not self.problems


ENVIRONMENT = dict(os.environ)
"""As this script found it: the runs do not inherit the emulator CA it trusts for itself."""


async def run_process(
    logs: Path, round_: int, name: str, argv: list[str], env: dict[str, str], cwd: Path, json_out: bool = False
) -> Run:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**ENVIRONMENT, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = (b.decode(errors="replace") for b in await process.communicate())
    code = process.returncode if process.returncode is not None else -1
    problems = [f"exit {code}"] if code != 0 else []
    problems += [marker for marker in CRASH_MARKERS if marker in stdout or marker in stderr]
    if json_out:
        try:
            json.loads(stdout)
        except ValueError:
            problems.append("stdout is not one JSON document")
    if problems:
        (logs / f"round{round_}-{name}.log").write_text(f"$ {' '.join(argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    run = Run(round_, name, code, problems)
    print(f"round {round_}  {name:<20} exit {code:<4} {'clean' if run.clean else 'UNCLEAN: ' + ', '.join(problems)}",
          flush=True)
    return run


async def client_commands(logs: Path, round_: int, work: Path, cert_dir: Path) -> list[Run]:
    """quell's short-lived client commands against a dev server and a case waiting for approval."""
    scenario = load_scenario(SCENARIO)
    approver = scenario.approvals.approvers[0] if scenario.approvals else "soc1@contoso.com"
    async with await start_dev_server() as env, isolated_namespace(env.client) as client, \
            tenant_stack(client, scenario, RunOptions(approval_timeout=300), {}, cert_dir) as stack:
        [alert] = parse_alerts(scenario.alert, scenario.tenant.id)
        case = await cases.open_case(client, cases.case_input(stack.settings, alert), stack.settings.temporal.task_queue)
        async with asyncio.timeout(PENDING_TIMEOUT):
            while not (waiting := await cases.pending(client, case.id)):
                await asyncio.sleep(0.1)
        key = work / f"round-{round_}-{approver}.pem"
        write_key(key, stack.analysts.keys[approver])
        address = ["--temporal-address", client.service_client.config.target_host]
        namespace = {"QUELL_TEMPORAL__NAMESPACE": client.namespace}
        runs = [
            await run_process(logs, round_, "cases", [QUELL, "cases", *address], namespace, work),
            await run_process(logs, round_, "pending", [QUELL, "pending", *address], namespace, work),
            await run_process(logs, round_, "report --json", [QUELL, "report", case.id, "--json", *address],
                              namespace, work, json_out=True),
            await run_process(logs, round_, "approve",
                              [QUELL, "approve", case.id, waiting[0].action_id, "--as", approver, "--key", str(key),
                               *address],
                              namespace, work),
        ]
        await case.terminate("repeat_runs round done")
    return runs


async def main(rounds: int, suite: bool) -> int:
    temporal_core_logs_to_stderr()  # the in-process worker's log, on stderr
    configure_logging("WARNING")
    logs = Path(tempfile.mkdtemp(prefix="quell-repeat-runs-"))
    work = logs / "work"
    work.mkdir()
    cert_dir = work / "certs"
    trust_emulator_ca(cert_dir)
    runs: list[Run] = []
    for round_ in range(1, rounds + 1):
        runs.append(await run_process(
            logs, round_, "scenario run --json", [QUELL, "scenario", "run", str(SCENARIO), "--json"], {}, work,
            json_out=True,
        ))
        runs += await client_commands(logs, round_, work, cert_dir)
        if suite:
            runs.append(await run_process(
                logs, round_, "test suite", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], {}, ROOT,
            ))
    unclean = [r for r in runs if not r.clean]
    print(f"\n{len(runs)} runs in {rounds} rounds: {len(runs) - len(unclean)} clean, {len(unclean)} unclean")
    for name in dict.fromkeys(r.name for r in runs):
        mine = [r for r in runs if r.name == name]
        codes = " ".join(str(r.exit_code) for r in mine)
        print(f"  {name:<20} exit codes: {codes}   unclean: {sum(not r.clean for r in mine)}")
    print(f"output of unclean runs: {logs}" if unclean else f"logs: {logs}")
    return 1 if unclean else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--no-suite", action="store_true", help="skip the test suite runs")
    arguments = parser.parse_args()
    exit_now(asyncio.run(main(arguments.rounds, not arguments.no_suite)))
