"""Calls a test keeps in flight: the first `times` calls an API pattern names wait, answered only
when the test releases them, so a crash or a restart lands while quell's call is on the wire.

A hold is set from the test's thread and kept on the emulator's event loop; `arrived` tells the
test the call is being held (no polling, no sleeping), `release` lets every held call go on.
"""

from __future__ import annotations

import asyncio
import threading

from emulator.faults import api_matches


class Hold:
    def __init__(self, api: str, times: int) -> None:
        self.api = api
        self._remaining = times
        self._lock = threading.Lock()
        self._released = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.arrived = threading.Event()
        """Set when the first call is being held."""

    def take(self, api: str) -> asyncio.Event | None:
        """This call's event to wait on, if the hold keeps it."""
        with self._lock:
            if self._released or self._remaining == 0 or not api_matches(self.api, api):
                return None
            self._remaining -= 1
            event = asyncio.Event()
            self._held.append((asyncio.get_running_loop(), event))
        self.arrived.set()
        return event

    async def reached(self, timeout: float) -> None:
        """Wait (bounded) until a call is being held."""
        if not await asyncio.to_thread(self.arrived.wait, timeout):
            raise TimeoutError(f"no {self.api} call arrived within {timeout:g} s")

    def release(self) -> None:
        """Answer every held call, and hold no more."""
        with self._lock:
            self._released = True
            held, self._held = self._held, []
        for loop, event in held:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)


class Holds:
    """The holds of one emulator; the first that keeps a call holds it."""

    def __init__(self) -> None:
        self._holds: list[Hold] = []

    def add(self, api: str, times: int = 1) -> Hold:
        hold = Hold(api, times)
        self._holds.append(hold)
        return hold

    async def keep(self, api: str) -> None:
        """Return when no hold keeps this call, or when its hold is released."""
        for hold in self._holds:
            if (event := hold.take(api)) is not None:
                await event.wait()
                return

    def release_all(self) -> None:
        for hold in self._holds:
            hold.release()
