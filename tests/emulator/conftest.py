"""Fixtures for the emulator tests: the example scenario, served over HTTPS, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emu_client import Api

from emulator.scenario import Scenario, load_scenario
from emulator.server import EmulatorHandle, running_emulator
from tests.conftest import PROJECT_SCENARIOS

EXAMPLE = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"


@pytest.fixture(scope="session")
def example() -> Scenario:
    return load_scenario(EXAMPLE)


@pytest.fixture
def emulator(example: Scenario, cert_dir: Path) -> Iterator[EmulatorHandle]:
    """A fresh tenant per test: tests change it."""
    with running_emulator(example, cert_dir) as handle:
        yield handle


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[Api]:
    client = Api(emulator)
    yield client
    client.http.close()
