"""A hunting query that runs out of time is retried once, then its source is unavailable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.hunting import REQUEST_TIMEOUT, run_hunting_query


class Graph:
    """Answers every hunting request with `failure`, recording the timeout it was given."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.timeouts: list[Any] = []

    async def request(self, method: str, path: str, json: Any = None, timeout: Any = None, **_: Any) -> Any:
        self.timeouts.append(timeout)
        raise self.failure


async def hunt_on_attempt(attempt: int, failure: Exception) -> tuple[ApplicationError, Graph]:
    graph = Graph(failure)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)

    async def hunt() -> None:
        clients: Any = SimpleNamespace(graph_http=graph)
        now = datetime.now(UTC)
        await run_hunting_query(clients, "compromised-sender-accounts",
                                {"since": now, "until": now, "countThreshold": 100})

    with pytest.raises(ApplicationError) as raised:
        await env.run(hunt)
    return raised.value, graph


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("read timed out"),
    ApplicationError("Graph answered 400: BadRequest | Query exceeded the timeout period.", type="GraphHttp400",
                     non_retryable=True),
])
async def test_a_timeout_is_retried_once_then_final(failure: Exception) -> None:
    first, graph = await hunt_on_attempt(1, failure)
    second, _ = await hunt_on_attempt(2, failure)

    assert (first.type, first.non_retryable) == ("HuntingTimeout", False)
    assert (second.type, second.non_retryable) == ("HuntingTimeout", True)
    assert graph.timeouts == [REQUEST_TIMEOUT]
    assert REQUEST_TIMEOUT.read is not None and REQUEST_TIMEOUT.read > 180, "Microsoft lets a query run 3 minutes"


async def test_other_failures_keep_their_own_retry_rules() -> None:
    throttled = ApplicationError("Graph answered 429: TooManyRequests", type="GraphThrottled")
    raised, _ = await hunt_on_attempt(2, throttled)

    assert raised is throttled
