"""Tenant-wide facts shared by the cases one worker runs (docs/storms.md, "Tenant calls").

A fact (a tenant-wide lookup such as Get-AcceptedDomain) is read once per tenant per `ttl`:
cases that need it within that time get the same answer, and cases that ask while the read is
still running wait for that one read instead of starting their own (single flight). Entries are
keyed by tenant, so one tenant's answer never serves another. A read that fails is not kept: every
case waiting for it gets the failure (and retries as its activity does), and the next asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Entry:
    read: asyncio.Future[Any]
    expires: float
    """The monotonic time after which the answer is too old: the read's start plus the ttl."""


class TenantCache:
    def __init__(self, ttl: timedelta, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def get(self, tenant_id: str, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """The tenant's `key` fact: the answer of a read in flight or younger than the ttl, else
        `read()`'s. A caller that is cancelled leaves the read running for the others."""
        now = self._clock()
        entry = self._entries.get((tenant_id, key))
        if entry is None or (entry.read.done() and now >= entry.expires):
            entry = _Entry(asyncio.ensure_future(read()), now + self._ttl)
            self._entries[(tenant_id, key)] = entry
            entry.read.add_done_callback(lambda done: self._forget_failed(tenant_id, key, done))
        result: T = await asyncio.shield(entry.read)
        return result

    def _forget_failed(self, tenant_id: str, key: str, read: asyncio.Future[Any]) -> None:
        entry = self._entries.get((tenant_id, key))
        if entry is not None and entry.read is read and (read.cancelled() or read.exception() is not None):
            del self._entries[(tenant_id, key)]
