"""The tenant cache (activities/tenant_cache.py): one read per tenant and key, shared while it runs
and for `ttl` after it started with the cases whose alert was raised before it started; never
across tenants; a failed read is not kept; what quell writes is forgotten."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from activities.tenant_cache import TenantCache

START = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
RAISED = START - timedelta(minutes=1)
"""An alert raised before every read of these tests started."""


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Reads:
    """A read that waits until released, counting how often it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.failure: Exception | None = None

    async def __call__(self) -> str:
        self.count += 1
        self.started.set()
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return f"answer {self.count}"


async def test_cases_asking_while_the_read_runs_share_it() -> None:
    cache, read = TenantCache(timedelta(0), clock=Clock()), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    read.release.set()
    assert await asyncio.gather(first, second) == ["answer 1", "answer 1"]
    assert read.count == 1
    assert await cache.get("tenant-a", "domains", RAISED, read) == "answer 2"  # ttl 0: only a read in flight is shared


async def test_an_answer_serves_for_the_ttl_then_is_read_again() -> None:
    clock = Clock()
    cache, read = TenantCache(timedelta(seconds=60), clock=clock), Reads()
    read.release.set()
    assert await cache.get("tenant-a", "domains", RAISED, read) == "answer 1"
    clock.now = START + timedelta(seconds=59.9)
    assert await cache.get("tenant-a", "domains", RAISED, read) == "answer 1"
    clock.now = START + timedelta(seconds=60)
    assert await cache.get("tenant-a", "domains", RAISED, read) == "answer 2"


async def test_a_case_whose_alert_was_raised_after_the_read_started_reads_again() -> None:
    clock = Clock()
    cache, read = TenantCache(timedelta(seconds=60), clock=clock), Reads()
    read.release.set()
    assert await cache.get("tenant-a", "connectors", RAISED, read) == "answer 1"
    clock.now = START + timedelta(seconds=10)
    raised_later = START + timedelta(seconds=5)
    assert await cache.get("tenant-a", "connectors", raised_later, read) == "answer 2"
    # The newer read serves the cases of both alerts from then on.
    assert await cache.get("tenant-a", "connectors", RAISED, read) == "answer 2"
    assert await cache.get("tenant-a", "connectors", raised_later, read) == "answer 2"
    assert read.count == 2


async def test_a_read_in_flight_serves_only_cases_whose_alert_was_raised_before_it_started() -> None:
    clock = Clock()
    cache, read = TenantCache(timedelta(seconds=60), clock=clock), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "connectors", RAISED, read))
    await read.started.wait()
    clock.now = START + timedelta(seconds=1)
    second = asyncio.ensure_future(cache.get("tenant-a", "connectors", START + timedelta(milliseconds=1), read))
    read.release.set()
    assert await asyncio.gather(first, second) == ["answer 1", "answer 2"]


async def test_tenants_and_keys_never_share_an_answer() -> None:
    cache, read = TenantCache(timedelta(minutes=5), clock=Clock()), Reads()
    read.release.set()
    answers = [await cache.get(tenant, key, RAISED, read) for tenant, key in
               [("tenant-a", "domains"), ("tenant-b", "domains"), ("tenant-a", "other"), ("tenant-a", "domains")]]
    assert answers == ["answer 1", "answer 2", "answer 3", "answer 1"]


async def test_a_forgotten_fact_is_read_again_and_only_for_its_tenant() -> None:
    cache, read = TenantCache(timedelta(minutes=5), clock=Clock()), Reads()
    read.release.set()
    for tenant in ("tenant-a", "tenant-b"):
        await cache.get(tenant, "block-lists", RAISED, read)
        await cache.get(tenant, "connectors", RAISED, read)
    cache.forget("tenant-a", "block-lists")
    answers = [await cache.get(tenant, key, RAISED, read) for tenant, key in
               [("tenant-a", "block-lists"), ("tenant-a", "connectors"), ("tenant-b", "block-lists")]]
    assert answers == ["answer 5", "answer 2", "answer 3"]


async def test_a_read_in_flight_when_its_fact_is_forgotten_answers_its_cases_and_is_not_kept() -> None:
    cache, read = TenantCache(timedelta(minutes=5), clock=Clock()), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "block-lists", RAISED, read))
    await read.started.wait()
    cache.forget("tenant-a", "block-lists")
    read.release.set()
    assert await first == "answer 1"
    assert await cache.get("tenant-a", "block-lists", RAISED, read) == "answer 2"


async def test_a_failed_read_fails_everyone_waiting_and_is_not_kept() -> None:
    cache, read = TenantCache(timedelta(minutes=5), clock=Clock()), Reads()
    read.failure = RuntimeError("Exchange answered 503")
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    read.release.set()
    for waiting in (first, second):
        with pytest.raises(RuntimeError, match="503"):
            await waiting
    read.failure = None
    assert await cache.get("tenant-a", "domains", RAISED, read) == "answer 2"


async def test_a_cancelled_case_leaves_the_read_to_the_others() -> None:
    cache, read = TenantCache(timedelta(minutes=5), clock=Clock()), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", RAISED, read))
    first.cancel()
    read.release.set()
    assert await second == "answer 1"
    assert first.cancelled() and read.count == 1
