"""The quota pacer: one workflow per tenant and task queue that hands out turns for that tenant's
calls, so every worker of the queue keeps to one pace (docs/storms.md, "Pacing").

Activities ask through the `acquire` update before each Graph, hunting or Exchange call
(activities/pacing.py); a worker process sends the requests of all its activities that wait
meanwhile in one update, because Temporal lets a workflow have only a few updates in flight
(10 by default). Each family is a token bucket in GCRA form: `next_turn` is the theoretical
arrival time, a call of n requests (a Graph JSON batch carries up to 20, which reach the tenant
at once) has its turn at `max(now, next_turn + (n − 1 − (burst − 1)) × interval)`, when the bucket
holds n tokens, and moves `next_turn` on by n intervals. A turn within the caller's `max_wait` is given (the caller sleeps
until it); a later one is reserved for the caller's activity, which raises to be retried at it and
takes it on its next attempt, so a long queue costs an attempt once, not a wait at every retry.
The `throttled` update empties the bucket until the tenant's Retry-After has passed.

Handlers issue no command and finish at once; times come from `workflow.now()`. The run continues
as new after `CONTINUE_AFTER` updates (or when Temporal suggests it), carrying the buckets and
the reservations that are not stale.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.types import ApiFamily, FamilyQuota, PaceGrant, PaceRequest, PacerState, ThrottleReport

CONTINUE_AFTER = 500
"""Updates a run answers before it continues as new (each adds a few events to its history)."""
STALE = timedelta(minutes=30)
"""A reserved turn this far in the past belongs to an activity that never came back for it."""


def pacer_id(task_queue: str, tenant_id: str) -> str:
    """The pacer of a tenant for the workers of one task queue (they share the tenant's quota)."""
    return f"quota-pacer/{task_queue}/{tenant_id}"


def _spacing(quota: FamilyQuota) -> tuple[timedelta, timedelta]:
    """(the interval between turns, how far ahead of `next_turn` a full bucket lets a turn be)."""
    interval = timedelta(minutes=1) / quota.per_minute
    return interval, interval * (quota.burst - 1)


def _grant(turn: datetime, now: datetime, reserved: bool = False) -> PaceGrant:
    return PaceGrant(turn=turn, wait=max(turn - now, timedelta(0)), reserved=reserved)


@workflow.defn(name="quota-pacer")
class QuotaPacerWorkflow:
    @workflow.init
    def __init__(self, state: PacerState) -> None:
        self._next_turn: dict[ApiFamily, datetime] = dict(state.next_turn)
        self._reserved: dict[str, list[datetime]] = {holder: list(turns) for holder, turns in state.reserved.items()}
        self._answered = 0

    @workflow.run
    async def run(self, state: PacerState) -> None:
        await workflow.wait_condition(
            lambda: self._answered >= CONTINUE_AFTER or workflow.info().is_continue_as_new_suggested())
        await workflow.wait_condition(workflow.all_handlers_finished)
        fresh = workflow.now() - STALE
        kept = {holder: [t for t in turns if t > fresh] for holder, turns in self._reserved.items()}
        workflow.continue_as_new(PacerState(next_turn=self._next_turn, reserved={h: t for h, t in kept.items() if t}))

    @workflow.update
    def acquire(self, requests: list[PaceRequest]) -> list[PaceGrant]:
        """A turn for each request, in order."""
        self._answered += 1
        now = workflow.now()
        return [self._turn(request, now) for request in requests]

    def _turn(self, request: PaceRequest, now: datetime) -> PaceGrant:
        held = self._reserved.get(request.holder)
        if held:
            turn = held[0]
            if turn - now > request.max_wait:
                return _grant(turn, now, reserved=True)
            held.pop(0)
            if not held:
                del self._reserved[request.holder]
            return _grant(turn, now)
        turn = self._take(request.family, request.quota, now, request.count)
        if turn - now <= request.max_wait:
            return _grant(turn, now)
        self._reserved.setdefault(request.holder, []).append(turn)
        return _grant(turn, now, reserved=True)

    @workflow.update
    def throttled(self, report: ThrottleReport) -> None:
        self._answered += 1
        _, ahead = _spacing(report.quota)
        until = workflow.now() + report.retry_after
        # An empty bucket at `until`: the next turn is then, the ones after it an interval apart.
        self._next_turn[report.family] = max(self._next_turn.get(report.family, until), until + ahead)

    def _take(self, family: ApiFamily, quota: FamilyQuota, now: datetime, count: int) -> datetime:
        interval, ahead = _spacing(quota)
        next_turn = max(self._next_turn.get(family, now), now)
        self._next_turn[family] = next_turn + interval * count
        return max(now, next_turn + interval * (count - 1) - ahead)
