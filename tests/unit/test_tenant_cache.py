"""The tenant cache (activities/tenant_cache.py): one read per tenant and key, shared while it runs
and for `ttl` after it started; never across tenants; a failed read is not kept."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from activities.tenant_cache import TenantCache


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
    cache, read = TenantCache(timedelta(0)), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    read.release.set()
    assert await asyncio.gather(first, second) == ["answer 1", "answer 1"]
    assert read.count == 1
    assert await cache.get("tenant-a", "domains", read) == "answer 2"  # ttl 0: only a read in flight is shared


async def test_an_answer_serves_for_the_ttl_then_is_read_again() -> None:
    now = [100.0]
    cache, read = TenantCache(timedelta(seconds=60), clock=lambda: now[0]), Reads()
    read.release.set()
    assert await cache.get("tenant-a", "domains", read) == "answer 1"
    now[0] = 159.9
    assert await cache.get("tenant-a", "domains", read) == "answer 1"
    now[0] = 160.0
    assert await cache.get("tenant-a", "domains", read) == "answer 2"


async def test_tenants_and_keys_never_share_an_answer() -> None:
    cache, read = TenantCache(timedelta(minutes=5)), Reads()
    read.release.set()
    answers = [await cache.get(tenant, key, read) for tenant, key in
               [("tenant-a", "domains"), ("tenant-b", "domains"), ("tenant-a", "other"), ("tenant-a", "domains")]]
    assert answers == ["answer 1", "answer 2", "answer 3", "answer 1"]


async def test_a_failed_read_fails_everyone_waiting_and_is_not_kept() -> None:
    cache, read = TenantCache(timedelta(minutes=5)), Reads()
    read.failure = RuntimeError("Exchange answered 503")
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    read.release.set()
    for waiting in (first, second):
        with pytest.raises(RuntimeError, match="503"):
            await waiting
    read.failure = None
    assert await cache.get("tenant-a", "domains", read) == "answer 2"


async def test_a_cancelled_case_leaves_the_read_to_the_others() -> None:
    cache, read = TenantCache(timedelta(minutes=5)), Reads()
    first = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    await read.started.wait()
    second = asyncio.ensure_future(cache.get("tenant-a", "domains", read))
    first.cancel()
    read.release.set()
    assert await second == "answer 1"
    assert first.cancelled() and read.count == 1
