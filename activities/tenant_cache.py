"""Tenant-wide facts shared by the cases one worker runs (docs/storms.md, "Tenant calls").

A fact (a tenant-wide read such as Get-AcceptedDomain or Get-InboundConnector) is read once and
serves every case that asks for it with a `since` at or before the moment that read started,
for `ttl` after it started: a case passes when its alert was raised, so an answer it gets
reflects the tenant at least as recent as what the alert is about, and never older than `ttl`.
Cases that ask while a read that serves them is still running wait for that one read instead of
starting their own (single flight). A case that an answer does not serve starts a new read, which
then serves later cases. Entries are keyed by tenant, so one tenant's answer never serves
another. A read that fails is not kept: every case waiting for it gets the failure (and retries as
its activity does), and the next asks again. What quell itself writes to a tenant `forget`s the
facts it changes, so the next case reads them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

ACCEPTED_DOMAINS = "accepted-domains"
"""Get-AcceptedDomain's answer."""
CONNECTORS = "connectors"
"""Get-InboundConnector's and Get-OutboundConnector's answers."""
BLOCK_LISTS = "block-lists"
"""Get-BlockedConnector's and Get-BlockedSenderAddress's answers."""


def directory_user(upn: str) -> str:
    """The key of the directory's answer for one account (its object id and UPN)."""
    return f"user:{upn.strip().casefold()}"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Entry:
    read: asyncio.Future[Any]
    started: datetime
    """When the read started (the worker's clock)."""


class TenantCache:
    def __init__(self, ttl: timedelta, clock: Callable[[], datetime] = utc_now) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def get(self, tenant_id: str, key: str, since: datetime, read: Callable[[], Awaitable[T]]) -> T:
        """The tenant's `key` fact from a read that started at or after `since` and is still in
        flight or younger than the ttl, else `read()`'s answer. A caller that is cancelled leaves the
        read running for the others."""
        now = self._clock()
        entry = self._entries.get((tenant_id, key))
        if entry is None or not self._serves(entry, since, now):
            self._prune(now)
            entry = _Entry(asyncio.ensure_future(read()), now)
            self._entries[(tenant_id, key)] = entry
            entry.read.add_done_callback(lambda done: self._forget_failed(tenant_id, key, done))
        result: T = await asyncio.shield(entry.read)
        return result

    def forget(self, tenant_id: str, *keys: str) -> None:
        """Quell changed these facts of the tenant: the next case reads them again. A read in flight
        finishes for the cases waiting on it and is not kept."""
        for key in keys:
            self._entries.pop((tenant_id, key), None)

    def _fresh(self, entry: _Entry, now: datetime) -> bool:
        """Still in flight, or answered within the ttl of its start."""
        return not entry.read.done() or entry.started <= now < entry.started + self._ttl

    def _serves(self, entry: _Entry, since: datetime, now: datetime) -> bool:
        return self._fresh(entry, now) and entry.started >= since

    def _prune(self, now: datetime) -> None:
        """Drop the answers past their ttl, so facts nobody asks for again (an account's) do not pile up."""
        for tenant_key, entry in list(self._entries.items()):
            if not self._fresh(entry, now):
                del self._entries[tenant_key]

    def _forget_failed(self, tenant_id: str, key: str, read: asyncio.Future[Any]) -> None:
        entry = self._entries.get((tenant_id, key))
        if entry is not None and entry.read is read and (read.cancelled() or read.exception() is not None):
            del self._entries[(tenant_id, key)]
