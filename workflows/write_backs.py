"""Alert write-backs (classify, comment) over every alert a case absorbed, batched: pure bookkeeping.

The case runs `action.alert-write-backs` on its alerts in the order it absorbed them, a batch at a
time (`HistoryLimits.write_back_batch`), and keeps a bounded tally per action (`WriteBackTally`):
how far it got, how many alerts ended how, and what happened to the first few that were not
written. The tally travels with the case when it continues as new, so a new run goes on where the
last one stopped. Each alert's own outcome is in the history, in the result of its batch.
"""

from __future__ import annotations

from workflows.types import ActionRecord, AlertOutcome, ClassifyParams, CommentParams, PlannedAction, WriteBackTally

NOTABLE = 20
"""Alerts the record's detail names that were not written or found as wanted."""
SETTLED = ("done", "already_done")


def is_write_back(action: PlannedAction) -> bool:
    return isinstance(action.params, ClassifyParams | CommentParams)


def failed(alert_ids: list[str], why: str) -> list[AlertOutcome]:
    """A batch whose activity failed after its retries: every alert in it failed, saying why."""
    return [AlertOutcome(alert_id=a, status="failed", verified=False, detail=f"alert {a}: {why}") for a in alert_ids]


def add(tally: WriteBackTally, outcomes: list[AlertOutcome]) -> None:
    """Count a batch's outcomes and move past its alerts."""
    for outcome in outcomes:
        tally.counts[outcome.status] = tally.counts.get(outcome.status, 0) + 1
        tally.unverified += not outcome.verified
        if tally.own is None:
            tally.own = outcome
        if outcome.status not in SETTLED and len(tally.notable) < NOTABLE:
            tally.notable.append(outcome.detail)
    tally.through += len(outcomes)


def settle(record: ActionRecord, tally: WriteBackTally) -> None:
    """The action's status, verification and detail from its tally: `failed` when any alert failed
    (the case then needs an analyst), else `done` when any alert was written, else the case's own
    alert's status; verified only when every alert was."""
    counts = tally.counts
    own = tally.own
    assert own is not None, "a case has its own alert"
    record.status = "failed" if counts.get("failed") else "done" if counts.get("done") else own.status
    record.verified = tally.unverified == 0
    if tally.through == 1:
        record.detail = own.detail
        return
    shown = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    notable = sum(n for status, n in counts.items() if status not in SETTLED)
    more = f"; and {notable - len(tally.notable)} more" if notable > len(tally.notable) else ""
    record.detail = "; ".join([f"{tally.through} alerts: {shown}", *tally.notable]) + more
