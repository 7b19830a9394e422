"""Every stored case history replays on today's workflow code: an ungated change fails here.

Histories come from `quell scenario check emulator/scenarios/*.yaml --history-dir tests/replay/histories`.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.case import ConnectorCaseWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(f"connector-case/{path.stem}", path.read_text())
    replayer = Replayer(workflows=[ConnectorCaseWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_histories_are_kept():
    assert HISTORIES, "no stored histories: regenerate them with `quell scenario check --history-dir`"
