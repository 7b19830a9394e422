"""How long an attempt waits for its quota turn (`patience`): an activity with a heartbeat timeout
waits at most half of it, as it does not heartbeat while asleep, unless it keeps heartbeating
(`heartbeating`); then its start-to-close bounds the wait. Run in the SDK's activity environment."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.pacing import heartbeating, patience

REQUEST_TIMEOUT = 30.0


def environment(heartbeat_timeout: timedelta) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, started_time=datetime.now(UTC), heartbeat_timeout=heartbeat_timeout,
                                   start_to_close_timeout=timedelta(minutes=10), schedule_to_close_timeout=None)
    return env


def request() -> httpx.Request:
    return httpx.Request("GET", "https://graph.example/v1.0/security/alerts_v2/a",
                         extensions={"timeout": {"connect": 5.0, "read": REQUEST_TIMEOUT}})


async def patience_outside_and_inside() -> tuple[timedelta, timedelta]:
    outside = patience(activity.info(), request())
    async with heartbeating(lambda: "progress"):
        inside = patience(activity.info(), request())
    return outside, inside


async def test_an_activity_that_keeps_heartbeating_may_wait_until_its_start_to_close():
    outside, inside = await environment(timedelta(minutes=2)).run(patience_outside_and_inside)

    assert outside == timedelta(minutes=1)  # half the heartbeat timeout: asleep, it would time out
    # The start-to-close less the request's own timeout (and the moment the probe took).
    assert timedelta(minutes=10, seconds=-REQUEST_TIMEOUT - 5) < inside <= timedelta(minutes=10, seconds=-REQUEST_TIMEOUT)


async def test_heartbeating_sends_the_latest_details_while_the_body_waits():
    env = environment(timedelta(seconds=0.3))
    beats: list[Any] = []
    second = asyncio.Event()

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if len(beats) == 2:
            second.set()

    env.on_heartbeat = on_heartbeat
    progress = ["first batch"]

    async def waiting() -> None:
        async with heartbeating(lambda: list(progress)):
            progress.append("second batch")
            async with asyncio.timeout(5):
                await second.wait()  # the body asleep (for its turn): heartbeats go on

    await env.run(waiting)
    assert beats[:2] == [(["first batch", "second batch"],)] * 2
