"""Pacing: inside an activity, every Graph, hunting and Exchange call of a tenant first takes a turn
from that tenant's quota pacer (workflows/pacer.py), which all workers of the task queue share.

`Pacer.event_hooks()` go on the tenant's httpx clients (activities/clients.py), so the raw Graph
calls, InvokeCommand and the Graph SDK all pass them. Before a request: take a turn for its family
and sleep until it. The turns of every call that waits in this process go to the pacer in one
`acquire` update at a time (a workflow may have only 10 updates in flight); an update that finds
no pacer running starts it. A turn further away than the attempt can wait (its start-to-close timeout,
less the request's own timeout) raises `QuotaWait`, which `RetryAtTurn` turns into a retryable
error whose `next_retry_delay` is the turn; an activity with a heartbeat timeout waits at most half
of it, unless it keeps heartbeating meanwhile (`heartbeating`). After a 429 or 503 with
Retry-After: report it, so that no worker calls that family again before the tenant said it may.
Outside an activity (the doctor, a test calling a client directly) nothing is paced.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from workflows.pacer import QuotaPacerWorkflow, pacer_id
from workflows.types import ApiFamily, FamilyQuota, PaceGrant, PaceRequest, PacerState, ThrottleReport

HUNTING_PATH = "/security/runHuntingQuery"
MIN_PATIENCE = timedelta(seconds=2)
"""An attempt waits at least this long for its turn rather than give up an attempt for it."""
_heartbeating: ContextVar[bool] = ContextVar("quell_heartbeating", default=False)


class QuotaWait(Exception):
    """The call's turn is later than this attempt can wait; the pacer keeps the turn for its next one."""

    def __init__(self, family: ApiFamily, wait: timedelta) -> None:
        super().__init__(f"{family} calls of this tenant are paced: this one's turn is in {wait.total_seconds():.0f} s")
        self.wait = wait


class RetryAtTurn(Interceptor):
    """Worker interceptor: an activity that raised `QuotaWait` is retried when its turn comes."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RetryAtTurn(next)


class _RetryAtTurn(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except QuotaWait as wait:
            raise ApplicationError(str(wait), type="QuotaWait", next_retry_delay=wait.wait) from None


def retry_delay(headers: Any) -> timedelta | None:
    """`Retry-After` in seconds (Graph and EXO send seconds, not dates)."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return timedelta(seconds=max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


MESSAGE_TRACE = re.compile(rb'"CmdletName"\s*:\s*"Get-MessageTrace')
"""Get-MessageTraceV2 and Get-MessageTraceDetailV2: the one Exchange limit Microsoft documents."""


SECURITY = re.compile(r"^/security/(alerts_v2|incidents)(/|$)")
"""Graph's alerts and incidents (a path relative to the version): Microsoft's Security limit."""


def _batch(request: httpx.Request) -> list[dict[str, Any]] | None:
    """The requests of a Graph JSON batch (`POST /$batch`), or None for any other call."""
    if request.method != "POST" or not request.url.path.endswith("/$batch"):
        return None
    try:
        requests = json.loads(request.content)["requests"]
        return [r for r in requests if isinstance(r, dict)] if isinstance(requests, list) else []
    except (ValueError, KeyError, TypeError):
        return []


def batched_requests(request: httpx.Request) -> int:
    """How many requests a call carries: those of a Graph JSON batch, else 1."""
    batch = _batch(request)
    return max(1, len(batch)) if batch is not None else 1


def family_of(request: httpx.Request) -> ApiFamily:
    path = request.url.path
    if path.endswith("/InvokeCommand"):
        return "message_trace" if MESSAGE_TRACE.search(request.content) else "exchange"
    if request.method == "POST" and path.endswith(HUNTING_PATH):
        return "hunting"
    batch = _batch(request)
    relative = [str(r.get("url", "")) for r in batch] if batch is not None else ["/" + path.lstrip("/").partition("/")[2]]
    # A batch that carries any alert or incident request is paced as one of them (the stricter limit).
    return "security" if any(SECURITY.match("/" + url.lstrip("/")) for url in relative) else "graph"


class Pacer:
    """The pacing of one tenant's calls: `quotas` per family, or None to call unpaced."""

    def __init__(self, tenant_id: str, quotas: dict[ApiFamily, FamilyQuota] | None) -> None:
        self._tenant_id = tenant_id
        self._quotas = quotas
        self._waiting: list[tuple[PaceRequest, asyncio.Future[PaceGrant]]] = []
        self._sending: asyncio.Task[None] | None = None

    def event_hooks(self) -> dict[str, list[Any]]:
        if self._quotas is None:
            return {}
        return {"request": [self._take_turn], "response": [self._report_throttling]}

    async def _take_turn(self, request: httpx.Request) -> None:
        if not activity.in_activity():
            return
        family = family_of(request)
        info = activity.info()
        holder, max_wait = f"{info.workflow_run_id}/{info.activity_id}/{family}", patience(info, request)
        # Microsoft counts each request of a JSON batch, and they reach it at once: one turn for
        # all of them, when the bucket holds a token for each.
        grant = await self._acquire(PaceRequest(family=family, quota=self._quota(family), holder=holder,
                                                max_wait=max_wait, count=batched_requests(request)))
        wait = max(min(grant.turn - datetime.now(UTC), grant.wait), timedelta(0))
        if grant.reserved:
            raise QuotaWait(family, wait)
        if wait > timedelta(0):
            await asyncio.sleep(wait.total_seconds())

    async def _acquire(self, request: PaceRequest) -> PaceGrant:
        """This request's turn, asked for with every other request that waits in this process."""
        turn: asyncio.Future[PaceGrant] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, turn))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send(activity.client(), activity.info().task_queue))
        return await turn

    async def _send(self, client: Client, queue: str) -> None:
        """One `acquire` update at a time, until no request waits."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                grants = await self._update(client, queue, QuotaPacerWorkflow.acquire, [r for r, _ in batch])
            except Exception as failure:
                for _, turn in batch:
                    if not turn.done():
                        turn.set_exception(failure)
                continue
            for (_, turn), grant in zip(batch, grants, strict=True):
                if not turn.done():  # its activity may have been cancelled meanwhile
                    turn.set_result(grant)

    async def _report_throttling(self, response: httpx.Response) -> None:
        retry_after = retry_delay(response.headers) if response.status_code in (429, 503) else None
        if retry_after is None or not activity.in_activity():
            return
        family = family_of(response.request)
        await self._update(activity.client(), activity.info().task_queue, QuotaPacerWorkflow.throttled,
                           ThrottleReport(family=family, quota=self._quota(family), retry_after=retry_after))

    def _quota(self, family: ApiFamily) -> FamilyQuota:
        assert self._quotas is not None  # the hooks exist only with quotas
        return self._quotas[family]

    async def _update(self, client: Client, queue: str, update: Any, argument: Any) -> Any:
        """Run a pacer update, first starting the tenant's pacer on the task queue if none runs."""
        pacer = client.get_workflow_handle(pacer_id(queue, self._tenant_id))
        try:
            return await pacer.execute_update(update, argument)
        except RPCError as missing:
            if missing.status != RPCStatusCode.NOT_FOUND:
                raise
        await client.start_workflow(QuotaPacerWorkflow.run, PacerState(), id=pacer.id, task_queue=queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        return await pacer.execute_update(update, argument)


def patience(info: activity.Info, request: httpx.Request) -> timedelta:
    """How long this attempt can wait for a turn and still make the call before it times out: the
    time left of its start-to-close (and schedule-to-close) timeout less the request's own timeout,
    and at most half its heartbeat timeout (a sleeping activity does not heartbeat); at least
    `MIN_PATIENCE`."""
    now = datetime.now(UTC)
    deadlines = []
    if info.start_to_close_timeout:
        deadlines.append(info.started_time + info.start_to_close_timeout)
    if info.schedule_to_close_timeout:
        deadlines.append(info.scheduled_time + info.schedule_to_close_timeout)
    if not deadlines:
        return MIN_PATIENCE
    seconds = [s for s in (request.extensions.get("timeout") or {}).values() if s]
    left = min(deadlines) - now - timedelta(seconds=max(seconds, default=0))
    if info.heartbeat_timeout and not _heartbeating.get():
        left = min(left, info.heartbeat_timeout / 2)
    return max(left, MIN_PATIENCE)


@asynccontextmanager
async def heartbeating(details: Callable[[], Any]) -> AsyncIterator[None]:
    """In an activity with a heartbeat timeout: heartbeat `details()` every third of it while the
    body runs, so the body's calls may wait for their turns as long as its start-to-close allows
    rather than half its heartbeat timeout (`patience`). Without this, an activity queued behind a
    long line (the alert write-backs of a storm, one tenant's security calls at 125 a minute) gave up
    its attempt, and its retry redid the reads the attempt had done."""
    every = activity.info().heartbeat_timeout
    if not every:
        yield
        return

    async def beat() -> None:
        while True:
            await asyncio.sleep(every.total_seconds() / 3)
            activity.heartbeat(details())

    beating = asyncio.create_task(beat())
    marked = _heartbeating.set(True)
    try:
        yield
    finally:
        _heartbeating.reset(marked)
        beating.cancel()
