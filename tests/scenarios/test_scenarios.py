"""The acceptance tests: every scenario file runs end to end and meets its `expected` block.

The same runner as `quell scenario check` (emulator over HTTPS, worker, intake, approvals
through the `decide` update), on the session's dev server, each scenario in its own namespace.
"""

from pathlib import Path

from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import RunOptions, check

SCENARIOS = sorted(PROJECT_SCENARIOS.glob("*.yaml"))


def test_there_are_scenarios_for_every_verdict():
    names = {p.name.split("-")[0] for p in SCENARIOS}
    assert {"tp", "bp", "fp", "nr"} <= names


async def test_every_scenario_passes(client, cert_dir):
    passed, failed, lines = await check(client, SCENARIOS, RunOptions(cert_dir=cert_dir))
    print("\n".join(lines), flush=True)
    assert failed == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
    assert passed == len(SCENARIOS)
