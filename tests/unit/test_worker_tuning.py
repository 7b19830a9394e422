"""The worker's slots and pollers come from `[worker]` settings: fixed counts, or the resource-based tuner."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from temporalio.worker import PollerBehaviorSimpleMaximum

from activities.clients import ClientPool
from config.settings import ResourceTuner, Settings, WorkerSettings
from workers.worker import new_worker


async def test_fixed_slots_and_pollers_reach_the_worker(client) -> None:
    settings = Settings(worker=WorkerSettings(max_concurrent_workflow_tasks=3, max_concurrent_activities=7,
                                              workflow_task_pollers=2, activity_task_pollers=3, max_cached_workflows=9))
    config = new_worker(client, settings, ClientPool([]), task_queue=f"quell-tuning-{uuid.uuid4().hex[:8]}").config()
    assert (config["max_concurrent_workflow_tasks"], config["max_concurrent_activities"]) == (3, 7)
    assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(2)
    assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(3)
    assert config["max_cached_workflows"] == 9 and config.get("tuner") is None


async def test_the_resource_tuner_replaces_the_fixed_counts(client) -> None:
    settings = Settings(worker=WorkerSettings(resource_tuner=ResourceTuner(target_cpu_usage=0.7)))
    config = new_worker(client, settings, ClientPool([]), task_queue=f"quell-tuning-{uuid.uuid4().hex[:8]}").config()
    assert config["tuner"] is not None
    assert config.get("max_concurrent_workflow_tasks") is None and config.get("max_concurrent_activities") is None


def test_defaults_are_sized_for_a_storm_and_nonsense_is_refused() -> None:
    worker = Settings().worker
    assert (worker.max_concurrent_workflow_tasks, worker.max_concurrent_activities) == (4, 200)
    for wrong in ({"max_concurrent_activities": 0}, {"workflow_task_pollers": 1},
                  {"resource_tuner": {"target_cpu_usage": 1.5}}, {"max_concurent_activities": 5}):
        with pytest.raises(ValidationError):
            WorkerSettings.model_validate(wrong)
