"""The alerts_v2 poller: one short `alert-poller` run per tenant and tick of a Temporal Schedule.

A run reads the cursor, lists the tenant's new "Suspicious connector activity" alerts oldest
first, a bounded number of pages (`alerts.list-new`), opens or joins a case for each through the
same path the webhook uses (`alerts.open-case`: parse → signal-with-start), and returns the
advanced cursor.

Where the cursor lives: in the run's *result*. A Schedule hands each run the result of the
last run that completed (`workflow.get_last_completion_result`), so the cursor is kept by the
Temporal server with the schedule: nothing else to store, it survives worker and server
restarts, and a failed or timed-out run leaves it where it was (the next run re-reads the same
window; case opening is idempotent, so nothing is fed twice into a running case). The cursor
moves only past alerts the run fed: a run that stops at its page limit leaves the rest, oldest
first, to the next. A run started by hand (the scenario runner, `quell poller trigger` on a
fresh schedule) takes its cursor from its input instead, and without one looks back
`initial_lookback`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.retries as retries  # passed through (workflows/case.py says why this form)
    from workflows.types import (
        AlertBatch,
        ListNewAlerts,
        OpenedCase,
        PollCursor,
        PollerInput,
        PollerResult,
    )

POLLER_WORKFLOW = "alert-poller"
LIST_ACTIVITY = "alerts.list-new"
OPEN_ACTIVITY = "alerts.open-case"

ACTIVITY_TIMEOUT = timedelta(minutes=2)


def poller_schedule_id(tenant_id: str) -> str:
    return f"alert-poller/{tenant_id}"


def advance(cursor: PollCursor, fed: dict[str, datetime], overlap: timedelta, more: bool = False) -> PollCursor:
    """The cursor after feeding `fed` (id → createdDateTime), every alert listed up to the last
    one read (a pass reads oldest first): `since` moves to the newest alert fed, and only ids
    inside the new overlap window are remembered (the set stays small). `more`: alerts were left
    unread (the pass stopped at its page limit)."""
    since = max([cursor.since, *fed.values()])
    horizon = since - overlap
    seen = {k: v for k, v in {**cursor.seen, **fed}.items() if v >= horizon}
    return PollCursor(since=since, seen=seen, more=more)


@workflow.defn(name=POLLER_WORKFLOW)
class AlertPollerWorkflow:
    @workflow.run
    async def run(self, request: PollerInput) -> PollerResult:
        cursor = self._cursor(request)
        batch = await workflow.execute_activity(
            LIST_ACTIVITY,
            ListNewAlerts(
                tenant_id=request.tenant_id,
                cursor=cursor,
                overlap=request.overlap,
                max_pages=request.max_pages,
                page_size=request.page_size,
            ),
            result_type=AlertBatch,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=retries.POLLER,
        )
        opened: list[OpenedCase] = []
        # One at a time, oldest first: a failure leaves the cursor at the last completed run, and
        # the alerts already fed are fed again harmlessly (signal-with-start joins their case).
        for alert in batch.alerts:
            opened.append(
                await workflow.execute_activity(
                    OPEN_ACTIVITY,
                    alert,
                    result_type=OpenedCase,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=retries.POLLER,
                    summary=f"alert {alert.alert_id}"[:200],
                )
            )
        workflow.set_current_details(f"{len(opened)} alert(s) fed, {len(batch.skipped)} skipped")
        return PollerResult(cursor=batch.cursor, cases=opened, skipped=batch.skipped)

    @staticmethod
    def _cursor(request: PollerInput) -> PollCursor:
        previous = workflow.get_last_completion_result(PollerResult)
        if previous is not None:
            return previous.cursor
        if request.cursor is not None:
            return request.cursor
        return PollCursor(since=workflow.now() - request.initial_lookback)
