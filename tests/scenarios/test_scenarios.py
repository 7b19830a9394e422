"""The acceptance tests: every scenario file runs end to end and meets its `expected` block.

The same runner as `quell scenario check` (emulator over HTTPS, worker, intake, approvals
through the `decide` update), on the session's dev server, each scenario in its own namespace.
"""

from typing import get_args

import yaml

from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import RunOptions, check
from workflows.types import ActionKind, FindingId

SCENARIOS = sorted(PROJECT_SCENARIOS.glob("*.yaml"))


def test_there_are_scenarios_for_every_verdict():
    names = {p.name.split("-")[0] for p in SCENARIOS}
    assert {"tp", "bp", "fp", "nr"} <= names


async def test_every_scenario_passes(client, cert_dir):
    passed, failed, lines = await check(client, SCENARIOS, RunOptions(cert_dir=cert_dir))
    print("\n".join(lines), flush=True)
    assert failed == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
    assert passed == len(SCENARIOS)


def test_every_finding_and_action_kind_is_expected_by_some_scenario():
    expected = [yaml.safe_load(p.read_text())["expected"] for p in SCENARIOS]
    findings = {f for e in expected for f in e.get("findings_include", [])}
    kinds = {a["kind"] for e in expected for a in e.get("actions", [])}
    assert set(get_args(FindingId)) - findings == set()
    assert set(get_args(ActionKind)) - kinds == set()
