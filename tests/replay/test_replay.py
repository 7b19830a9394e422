"""Every stored history (cases, and the quota pacer's) replays on today's workflow code: an ungated
change fails here.

Histories are only ever added, never regenerated (docs/architecture.md, "Changing workflow code
safely"): SHA256SUMS pins each stored file, so editing one fails `test_histories_are_only_added`.
"""

import hashlib
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.case import ConnectorCaseWorkflow
from workflows.pacer import QuotaPacerWorkflow

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    # Under the workflow id it ran with: a case checks that signed decisions name it.
    text = path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(started.get("workflowId", f"connector-case/{path.stem}"), text)
    replayer = Replayer(workflows=[ConnectorCaseWorkflow, QuotaPacerWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def recorded_digests() -> dict[str, str]:
    lines = (HISTORY_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_histories_are_only_added():
    recorded = recorded_digests()
    missing = sorted(set(recorded) - {p.name for p in HISTORIES})
    unrecorded = sorted({p.name for p in HISTORIES} - set(recorded))
    changed = sorted(
        p.name for p in HISTORIES
        if p.name in recorded and hashlib.sha256(p.read_bytes()).hexdigest() != recorded[p.name]
    )
    assert not missing, f"stored histories were deleted: {missing}"
    assert not changed, f"stored histories were rewritten (add a new file instead): {changed}"
    assert not unrecorded, f"append these to SHA256SUMS (`sha256sum NAME >> SHA256SUMS`): {unrecorded}"
    assert len(recorded) >= 23, "the 23 scenario histories of the first release are kept"
