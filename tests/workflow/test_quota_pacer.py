"""The quota pacer through its updates, as the workers' activities call it: bursts, spacing,
reserved turns, Retry-After, and a continue-as-new that keeps them (dev server, real worker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from workflows.pacer import CONTINUE_AFTER, QuotaPacerWorkflow
from workflows.types import FamilyQuota, PaceGrant, PaceRequest, PacerState, ThrottleReport

PATIENT = timedelta(hours=1)
SECOND = timedelta(seconds=1)


@pytest.fixture
async def pacer(client: Client) -> AsyncIterator[WorkflowHandle]:
    queue = f"pacer-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[QuotaPacerWorkflow]):
        started = await client.start_workflow(QuotaPacerWorkflow.run, PacerState(), id=f"quota-pacer/{queue}/t",
                                              task_queue=queue)
        handle = client.get_workflow_handle(started.id)  # the current run, across continue-as-new
        yield handle
        await handle.terminate("test done")


def ask(quota: FamilyQuota, holder: str, max_wait: timedelta = PATIENT) -> PaceRequest:
    return PaceRequest(family="hunting", quota=quota, holder=holder, max_wait=max_wait)


async def acquire(pacer: WorkflowHandle, *requests: PaceRequest) -> list[PaceGrant]:
    return await pacer.execute_update(QuotaPacerWorkflow.acquire, list(requests))


async def test_a_full_bucket_gives_its_burst_at_once_then_a_turn_an_interval(pacer):
    quota = FamilyQuota(per_minute=60, burst=3)
    grants = await acquire(pacer, *(ask(quota, f"a{i}") for i in range(5)))
    first = grants[0].turn
    assert [g.turn - first for g in grants] == [timedelta(0)] * 3 + [SECOND, 2 * SECOND]
    assert not any(g.reserved for g in grants)
    [later] = await acquire(pacer, ask(quota, "a5"))  # the bucket has not refilled meanwhile
    assert later.turn - first == 3 * SECOND


async def test_a_json_batch_takes_its_tokens_together_when_the_bucket_holds_them(pacer):
    quota = FamilyQuota(per_minute=60, burst=5)
    batch = ask(quota, "batch-1").model_copy(update={"count": 5})
    first, second, single = await acquire(pacer, batch, batch.model_copy(update={"holder": "batch-2"}),
                                          ask(quota, "single"))
    # A full bucket sends the first batch at once; the second goes when 5 tokens have come back (its
    # requests reach the tenant together, so none may go earlier); then one a second again.
    assert (second.turn - first.turn, single.turn - first.turn) == (5 * SECOND, 6 * SECOND)
    # In those 6 s: 11 requests = burst + 6 s of refill, never more.


async def test_a_turn_beyond_the_callers_patience_is_kept_for_it(pacer):
    quota = FamilyQuota(per_minute=6, burst=1)  # a turn every 10 s
    [now] = await acquire(pacer, ask(quota, "first"))
    [far] = await acquire(pacer, ask(quota, "impatient", max_wait=SECOND))
    assert far.reserved and far.turn - now.turn == 10 * SECOND
    [early_return] = await acquire(pacer, ask(quota, "impatient", max_wait=SECOND))
    assert early_return.turn == far.turn and early_return.reserved  # still too far: kept, no second turn taken
    [other] = await acquire(pacer, ask(quota, "other"))
    assert not other.reserved and other.turn - now.turn == 20 * SECOND
    [back] = await acquire(pacer, ask(quota, "impatient"))  # the next attempt, at its turn
    assert back.turn == far.turn and not back.reserved
    [again] = await acquire(pacer, ask(quota, "impatient"))  # the reserved turn is used up
    assert again.turn - now.turn == 30 * SECOND


async def test_no_turn_starts_before_the_tenants_retry_after(pacer):
    quota = FamilyQuota(per_minute=600, burst=5)
    [before] = await acquire(pacer, ask(quota, "before"))
    await pacer.execute_update(QuotaPacerWorkflow.throttled,
                               ThrottleReport(family="hunting", quota=quota, retry_after=30 * SECOND))
    after = await acquire(pacer, ask(quota, "x"), ask(quota, "y"))
    assert after[0].turn - before.turn >= 30 * SECOND
    assert after[1].turn - after[0].turn == timedelta(seconds=0.1)  # an empty bucket: no burst after a 429
    [graph] = await acquire(pacer, PaceRequest(family="graph", quota=quota, holder="g", max_wait=PATIENT))
    assert graph.turn - before.turn < 30 * SECOND  # other families go on


async def test_the_pacer_continues_as_new_with_its_buckets_and_reservations(pacer):
    quota = FamilyQuota(per_minute=6, burst=1)
    [first] = await acquire(pacer, ask(quota, "first"))
    [kept] = await acquire(pacer, ask(quota, "impatient", max_wait=SECOND))
    run = (await pacer.describe()).run_id
    for i in range(CONTINUE_AFTER):
        await pacer.execute_update(QuotaPacerWorkflow.acquire, [])
    [back] = await acquire(pacer, ask(quota, "impatient"))
    [next_one] = await acquire(pacer, ask(quota, "next"))
    assert (await pacer.describe()).run_id != run
    assert back.turn == kept.turn and not back.reserved
    assert next_one.turn - first.turn == 20 * SECOND
