"""The connector case: resolve → collect evidence → grade → plan → approvals → remediate → report.

`run` reads like the playbook; every decision is a pure function (grading, planning, approvals)
and every side effect an activity. Approvals arrive as the `decide` update (validated, so a
rejected request leaves no history) or the `decision` signal for tools that can only signal.

Signed approvals (docs/security.md): who may approve, with which keys, and which kinds need
approval come from the worker's settings through the `approvals.trust` activity, fetched
before planning and again before each action that needed approval; decisions are verified
against the last trust fetched, and each action activity verifies them again on its own.
Cases started before this (no `signed-approvals` marker) replay with the old rules.

Storms (docs/storms.md, "Bounded history"): a running case absorbs alerts by id, writes back to
them a batch per activity, and continues as new, carrying its state, when its run's history grows
past its limits (`BOUNDED_HISTORY`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities import remediation
    from activities.approval_gate import TrustActivities
    from activities.notify import NotifyActivities
    # `import package.module`, not `from package import module`: the sandbox never sees a submodule
    # imported through a from-list, and re-imported (compiled) every one of these for every case run.
    import workflows.approvals as approvals
    import workflows.case_view as case_view
    import workflows.evidence as evidence
    import workflows.grading as grading
    import workflows.metrics as metrics
    import workflows.planning as planning
    import workflows.retries as retries
    import workflows.search_attributes as sa
    import workflows.write_backs as write_backs
    from workflows.types import (
        AbsorbedAlert,
        ActionInput,
        ActionOutcome,
        ActionRecord,
        AlertWriteBacks,
        CarriedCase,
        CaseInput,
        CaseReport,
        CaseStage,
        CaseSummary,
        ClassifyParams,
        CommentParams,
        ConnectorConfig,
        ConnectorResolution,
        Decision,
        DecisionEntry,
        DecisionReceipt,
        Evidence,
        IgnoredSignals,
        Notification,
        NotifiedAction,
        PendingApproval,
        Plan,
        PlannedAction,
        Trust,
        Verdict,
        WriteBackTally,
    )

ACTION_TIMEOUT = timedelta(minutes=2)
WRITE_BACK_TIMEOUT = timedelta(minutes=10)
"""A batch of alert write-backs: Graph JSON batches of 20 alerts, three requests each."""
WRITE_BACK_HEARTBEAT = timedelta(minutes=2)
"""Longer than one Graph batch's three requests at their 30 s timeout."""
SIGNED_APPROVALS = "signed-approvals"
PLAYBOOK_V2 = "playbook-v2"
"""The whole playbook (docs/scenarios.md, version 2): one audit query for every connector and the
admins' footprint, the sweep findings and their actions, the version 2 grading rules."""

PUBLISH_ONCE_PER_TASK = "publish-once-per-task"
"""Patch id. From it on, search attributes are derived from the case and upserted at most once per
workflow task (`_publish`), and one reminder loop (`_remind`) serves every pending approval instead
of a reminder timer per action. Cases started before it replay on the old branch: an upsert at every
change (`_upsert_now`) and `_await_decision_with_own_timer`."""

CONNECTOR_GUID_ATTRIBUTE = "connector-guid-attribute"
"""Patch id. From it on, the QuellConnector search attribute holds the connector's Guid, not its
name: search attributes are indexed in the clear (the codec cannot encrypt them), and the Guid is
the immutable id quell acts on. Earlier cases keep the name."""

BOUNDED_HISTORY = "bounded-history"
"""Patch id. From it on, alert write-backs run a batch of the case's alerts per activity
(`action.alert-write-backs`, `HistoryLimits.write_back_batch`), and a run whose history passed its
limits continues as new at the next safe point (`_continue_as_new`), carrying the case's state.
Cases started before it run one write-back activity per alert and never continue as new."""


def playbook_notes(collected: Evidence) -> dict[str, object]:
    """What the playbook says to note: message ids, connector dates and editors, source IPs."""
    connector = collected.connector
    return {
        "messages_through_connector": collected.mail.messages,
        "sample_network_message_ids": collected.mail.sample_message_ids,
        "source_ips": collected.mail.sender_ips,
        "connector_created": connector.when_created.isoformat() if connector.when_created else None,
        "connector_last_modified": connector.when_changed.isoformat() if connector.when_changed else None,
        "connector_modified_by": sorted({c.actor for c in collected.changes}),
        "unavailable_sources": collected.unavailable,
        **audit_notes(collected.changes_source, collected.failed_audit_sources),
    }


def audit_notes(source: str, failed: list[str]) -> dict[str, object]:
    """Which audit source decided, and which failed before it (CloudAppEvents holds 30 days only)."""
    if not source:
        return {}
    notes: dict[str, object] = {"audit_source": source}
    if failed:
        notes["audit_sources_failed"] = failed
    if source == "cloud_app_events":
        notes["audit_source_caveat"] = ("only CloudAppEvents answered: it holds 30 days of records, so older "
                                        "values a revert would restore may be missing")
    return notes


@workflow.defn(name="connector-case")
class ConnectorCaseWorkflow:
    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        self._case = case
        self._stage: CaseStage = "resolving"
        self._alerts: list[str] = [case.alert.alert_id]
        """Every alert the case absorbed, once, in the order it absorbed them."""
        self._absorbed: set[str] = set(self._alerts)
        self._alert_signals = 0
        self._connector: ConnectorConfig | None = None
        self._verdict: Verdict | None = None
        self._plan: Plan | None = None
        self._records: dict[str, ActionRecord] = {}
        self._deadline: datetime | None = None
        self._notes: dict[str, object] = {}
        self._ignored = IgnoredSignals()
        self._started = workflow.now()
        self._finished: datetime | None = None
        self._signed = False
        self._trust: Trust | None = None
        self._nonces: set[str] = set()
        self._case_accounts: list[str] = []
        self._withdrawn: list[str] = []
        self._publishing = False
        self._connector_by_guid = False
        self._published: dict[str, object] = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes.search_attributes
        }
        self._trail: list[DecisionEntry] = []
        self._reminding: asyncio.Task[None] | None = None
        self._reminders = 0
        self._reminder_due: datetime | None = None
        self._notifying = 0
        self._bounded = False
        self._run_number = 1
        self._write_backs: dict[str, WriteBackTally] = {}
        if case.carried is not None:
            self._restore(case.carried)

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, case: CaseInput) -> CaseReport:
        self._signed = workflow.patched(SIGNED_APPROVALS)
        v2 = workflow.patched(PLAYBOOK_V2)
        self._publishing = workflow.patched(PUBLISH_ONCE_PER_TASK)
        self._connector_by_guid = workflow.patched(CONNECTOR_GUID_ATTRIBUTE)
        self._bounded = workflow.patched(BOUNDED_HISTORY)
        parallel = v2 and workflow.patched(evidence.PARALLEL_EVIDENCE)
        publisher = asyncio.create_task(self._publish())
        if case.carried is not None:  # an earlier run decided all up to here and handed it on
            if self._undecided():
                self._reminding = asyncio.create_task(self._remind())
            await self._remediate()
            return await self._close(publisher)
        self._upsert_now(sa.TENANT.value_set(case.tenant_id))
        metrics.case_started(case.tenant_id)
        self._set_stage("resolving")
        # The audit log reads every connector's changes: it need not wait for the resolution; nor
        # need the mail of a connector the alert names by configuration.
        mail_early = parallel and workflow.patched(evidence.MAIL_BESIDE_RESOLUTION)
        early = evidence.start_early_reads(case, workflow.now(), mail_early) if parallel else None
        resolution = await evidence.resolve_connector(case)
        collected: Evidence | None = None
        if resolution.connector is None:
            self._verdict = await self._unresolved(case, resolution, v2, early)
        else:
            self._connector = resolution.connector
            self._upsert_now(sa.CONNECTOR.value_set(self._connector_key(resolution.connector)))
            self._set_stage("collecting")
            if early is not None:
                collected = await evidence.collect_beside_audit(case, resolution, early)
            elif v2:
                collected = await evidence.collect(case, resolution, workflow.now())
            else:
                collected = await evidence.collect_evidence(case, resolution.connector, workflow.now())
            self._set_stage("grading")
            self._verdict = grading.grade(collected, case.organization, case.thresholds, workflow.now(), v2)
            self._notes = playbook_notes(collected)
        self._upsert_now(sa.VERDICT.value_set(self._verdict.kind))
        metrics.verdict_reached(self._verdict.kind, workflow.now() - self._started)

        if self._signed:
            trust = await self._fetch_trust()
            # Plan with the worker's policy: the input's policy is whatever the starter wrote.
            case = case.model_copy(update={"policy": case.policy.model_copy(
                update={"approvers": trust.approvers, "by_action": trust.by_action, "default": trust.default}
            )})
        self._plan = planning.plan(case, self._verdict, collected, v2)
        self._case_accounts = approvals.case_accounts(self._verdict.findings, self._plan)
        self._records = {a.id: ActionRecord(action=a) for a in self._plan.actions}
        await self._request_approvals()
        await self._remediate()
        return await self._close(publisher)

    async def _close(self, publisher: asyncio.Task[None]) -> CaseReport:
        self._set_stage("closed")
        self._finished = workflow.now()
        if self._reminding is not None:
            await self._reminding  # an expiry notice may still be on its way
        await workflow.wait_condition(workflow.all_handlers_finished)
        metrics.case_closed(self._report())
        publisher.cancel()
        self._publish_changes()  # the final state, before the result: nothing may follow the result
        return self._report()

    async def _unresolved(
        self, case: CaseInput, resolution: ConnectorResolution, v2: bool, early: evidence.EarlyReads | None
    ) -> Verdict:
        """No connector to grade; since version 2 the other and the deleted connectors are still swept
        (from `early`, the reads started with the resolution, when there are)."""
        if not v2:
            return grading.connector_unresolved_verdict(resolution)
        self._set_stage("collecting")
        if early is not None:
            now = early.now
            swept, unavailable, log = await evidence.sweep_beside_audit(resolution, early)
        else:
            now = workflow.now()
            swept, unavailable, log = await evidence.sweep_only(case, resolution, now)
        self._set_stage("grading")
        if log is not None:
            self._notes = audit_notes(log.source, log.failed_sources)
        return grading.connector_unresolved_verdict(
            resolution, swept, case.organization, now - case.thresholds.lookback, now, unavailable
        )

    # ------------------------------------------------------------------ approvals

    async def _request_approvals(self) -> None:
        gated = [r for r in self._records.values() if approvals.needs_approval(r, self._case.mode)]
        if not gated:
            return
        for record in gated:
            record.status = "awaiting_approval"
        self._deadline = workflow.now() + self._case.policy.expire_after
        self._set_stage("awaiting_approval")
        self._refresh_pending()
        await self._notify("approval_requested", gated)
        if self._publishing:
            self._start_reminding()

    def _undecided(self) -> list[ActionRecord]:
        return [r for r in self._records.values() if r.status == "awaiting_approval" and not approvals.is_approved(r)]

    def _start_reminding(self) -> None:
        """A reminder loop from scratch: the first reminder `remind_every` from now."""
        self._reminders, self._reminder_due = 0, None
        self._reminding = asyncio.create_task(self._remind())

    async def _remind(self) -> None:
        """While any action waits for a decision: remind, escalate, and expire them all at the deadline.

        One timer at a time for the whole case, cancelled once when the last decision arrives. The
        count and the next reminder's time are the case's, so a run that continues the case goes on
        with them."""
        policy = self._case.policy
        assert self._deadline is not None
        while self._undecided():
            remaining = self._deadline - workflow.now()
            if remaining <= timedelta(0):
                expired = self._undecided()
                for record in expired:
                    record.status = "expired"
                    record.decided_at = workflow.now()
                await self._notify("expired", expired)
                return
            if self._reminder_due is None:
                self._reminder_due = workflow.now() + policy.remind_every
            due_in = self._reminder_due - workflow.now()
            if due_in > timedelta(0):
                try:
                    await workflow.wait_condition(lambda: not self._undecided(), timeout=min(remaining, due_in))
                    continue
                except asyncio.TimeoutError:
                    if workflow.now() >= self._deadline:
                        continue
            self._reminders += 1
            self._reminder_due = None
            kind = "escalation" if self._reminders >= policy.escalate_after_reminders else "reminder"
            await self._notify(kind, self._undecided())

    async def _await_decision(self, record: ActionRecord) -> None:
        """Wait for this action's decision; `_remind` reminds, escalates and expires."""
        if not self._publishing:
            await self._await_decision_with_own_timer(record)
            return
        if record.status == "awaiting_approval" and not approvals.is_approved(record):
            self._set_stage("awaiting_approval")
            await self._wait(lambda: record.status != "awaiting_approval" or approvals.is_approved(record))
        self._set_stage("remediating")

    async def _await_decision_with_own_timer(self, record: ActionRecord) -> None:
        """Before PUBLISH_ONCE_PER_TASK: wait for this action's decision, reminding and escalating;
        expire at the deadline."""
        policy = self._case.policy
        reminders = 0
        self._set_stage("awaiting_approval")
        while record.status == "awaiting_approval" and not approvals.is_approved(record):
            assert self._deadline is not None
            remaining = self._deadline - workflow.now()
            if remaining <= timedelta(0):
                record.status = "expired"
                record.decided_at = workflow.now()
                await self._notify("expired", [record])
                break
            try:
                await workflow.wait_condition(
                    lambda: record.status != "awaiting_approval" or approvals.is_approved(record),
                    timeout=min(remaining, policy.remind_every),
                )
            except asyncio.TimeoutError:
                if workflow.now() >= self._deadline:
                    continue
                reminders += 1
                waiting = [r for r in self._records.values() if r.status == "awaiting_approval"]
                kind = "escalation" if reminders >= policy.escalate_after_reminders else "reminder"
                await self._notify(kind, waiting)
        self._set_stage("remediating")
        self._refresh_pending()

    async def _fetch_trust(self) -> Trust:
        self._trust = await workflow.execute_activity_method(
            TrustActivities.trust,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retries.TRUST,
            summary="approval policy and keys from the worker's settings",
        )
        return self._trust

    async def _await_trusted_decision(self, record: ActionRecord) -> None:
        """Wait for the decision, then re-read the trust: approvals that no longer count under
        the worker's current settings are withdrawn and the action waits again."""
        while True:
            await self._await_decision(record)
            if not self._signed or record.status != "awaiting_approval":
                return
            withdrawn = approvals.withdraw_untrusted(record, workflow.info().workflow_id, await self._fetch_trust())
            if not withdrawn:
                return
            self._withdrawn.extend(withdrawn)
            workflow.logger.warning("approvals withdrawn", extra={"withdrawn": withdrawn})
            if self._publishing and (self._reminding is None or self._reminding.done()):
                # The reminder loop ended with the last decision; the action waits again until the deadline.
                self._start_reminding()

    def _validate(self, decision: Decision) -> None:
        if not self._signed:
            approvals.validate(decision, self._plan, self._records, self._case.policy)
            return
        if self._trust is None:
            raise ValueError("the case has no plan yet")
        approvals.validate_signed(
            decision, workflow.info().workflow_id, self._plan, self._records, self._trust, workflow.now(),
            self._nonces, self._case_accounts,
        )

    @workflow.update(name="decide")
    def decide(self, decision: Decision) -> DecisionReceipt:
        record = self._records[decision.action_id]
        if decision.signed:
            self._nonces.add(decision.nonce)
        approvals.apply(record, decision, workflow.now())
        self._trail.append(DecisionEntry(at=workflow.now(), decision=decision))
        workflow.logger.info(
            "decision recorded",
            extra={"action": decision.action_id, "approver": decision.approver, "approve": decision.approve},
        )
        self._refresh_pending()
        return approvals.receipt(record, decision)

    @decide.validator
    def _validate_decide(self, decision: Decision) -> None:
        self._validate(decision)

    @workflow.signal(name="decision")
    def decision(self, decision: Decision) -> None:
        """The same as `decide` for tools that can only signal: invalid ones are logged and dropped."""
        try:
            self._validate(decision)
        except ValueError as invalid:
            self._ignored.add(f"{decision.action_id} by {decision.approver}: {invalid}")
            workflow.logger.warning("decision signal ignored", extra={"reason": str(invalid)})
            return
        self.decide(decision)

    @workflow.signal(name="alert_received")
    def alert_received(self, alert: AbsorbedAlert) -> None:
        """A repeated or related alert joins this case, by id and once (histories written before
        `AbsorbedAlert` carry whole AlertRefs here, which decode to the same)."""
        self._alert_signals += 1
        if alert.tenant_id != self._case.tenant_id:
            self._ignored.add(f"alert {alert.alert_id[:100]}: another tenant's")
            return
        if alert.alert_id not in self._absorbed:
            self._absorbed.add(alert.alert_id)
            self._alerts.append(alert.alert_id)

    # ------------------------------------------------------------------ remediation

    async def _remediate(self) -> None:
        assert self._plan is not None
        self._set_stage("remediating")
        for action in self._plan.actions:
            record = self._records[action.id]
            if record.status in ("done", "already_done", "failed", "dry_run"):
                continue  # executed before this run continued the case
            await self._continue_if_due()
            if record.status == "awaiting_approval":
                if blocked_by := approvals.unmet_requirements(record, self._records):
                    # Do not make the analyst wait on something that cannot run anyway.
                    approvals.skip(record, f"requires {', '.join(blocked_by)}", workflow.now())
                    self._refresh_pending()
                    continue
                await self._await_trusted_decision(record)
            if record.status in ("rejected", "expired", "skipped"):
                continue  # decided against (possibly before its turn came), or timed out
            if action.policy == "never" and self._case.mode == "enforce":
                record.detail = "policy 'never': planned only"
                continue
            if blocked_by := approvals.unmet_requirements(record, self._records):
                approvals.skip(record, f"requires {', '.join(blocked_by)}", workflow.now())
                continue
            await self._execute(record)
        await self._catch_up()
        self._refresh_pending()

    async def _execute(self, record: ActionRecord) -> None:
        """Run the action's activity; alert write-backs run once for every alert the case absorbed."""
        record.started_at = record.started_at or workflow.now()
        if self._bounded and write_backs.is_write_back(record.action):
            await self._write_back(record)
            record.finished_at = workflow.now()
            return
        outcomes: list[ActionOutcome] = []
        try:
            for action in self._per_alert(record.action):
                outcomes.append(await self._run_action(action, record))
        except ActivityError as failure:
            record.status = "failed"
            record.verified = False
            record.detail = "; ".join([o.detail for o in outcomes] + [str(failure.cause or failure)[:500]])
        else:
            record.status = "done" if any(o.status == "done" for o in outcomes) else outcomes[0].status
            record.verified = all(o.verified for o in outcomes)
            record.detail = "; ".join(o.detail for o in outcomes)
        record.finished_at = workflow.now()

    async def _write_back(self, record: ActionRecord) -> None:
        """The write-back for every alert the case has absorbed so far, in that order, a batch per
        activity (alerts absorbed later get it at the close, `_catch_up`). The case may continue as
        new between batches: its tally says where the next run goes on."""
        tally = self._write_backs.setdefault(record.action.id, WriteBackTally())
        absorbed = len(self._alerts)
        while tally.through < absorbed:
            await self._continue_if_due()
            batch = self._alerts[tally.through:min(absorbed, tally.through + self._case.history.write_back_batch)]
            try:
                done = await workflow.execute_activity_method(
                    remediation.RemediationActivities.alert_write_backs,
                    AlertWriteBacks(action=self._action_input(record.action, record), alert_ids=batch),
                    start_to_close_timeout=WRITE_BACK_TIMEOUT,
                    heartbeat_timeout=WRITE_BACK_HEARTBEAT,
                    retry_policy=retries.TENANT,
                    summary=case_view.write_back_summary(record.action, batch, record.approved_by),
                )
                outcomes = done.outcomes
            except ActivityError as failure:
                outcomes = write_backs.failed(batch, str(failure.cause or failure)[:300])
            write_backs.add(tally, outcomes)
        write_backs.settle(record, tally)

    async def _catch_up(self) -> None:
        """Alerts absorbed after a write-back action ran get it too, as the case closes (in full
        batches, not one activity per alert that trickled in)."""
        for action_id, tally in self._write_backs.items():
            if tally.through < len(self._alerts):
                record = self._records[action_id]
                await self._write_back(record)
                record.finished_at = workflow.now()

    def _per_alert(self, action: PlannedAction) -> list[PlannedAction]:
        """Before BOUNDED_HISTORY: the write-back once per alert, an activity each."""
        params = action.params
        if not isinstance(params, ClassifyParams | CommentParams):
            return [action]
        return [
            action.model_copy(update={"params": params.model_copy(update={"alert_id": alert})})
            for alert in self._alerts
        ]

    async def _run_action(self, action: PlannedAction, record: ActionRecord) -> ActionOutcome:
        return await workflow.execute_activity_method(
            remediation.BY_KIND[action.kind],
            self._action_input(action, record),
            start_to_close_timeout=ACTION_TIMEOUT,
            retry_policy=retries.TENANT,
            summary=case_view.action_summary(action, record.approved_by),
        )

    def _action_input(self, action: PlannedAction, record: ActionRecord) -> ActionInput:
        signed = {"plan": self._plan, "decisions": record.decisions, "case_accounts": self._case_accounts}
        return ActionInput(
            tenant_id=self._case.tenant_id,
            case_id=workflow.info().workflow_id,
            action=action,
            mode=self._case.mode,
            **(signed if self._signed else {}),
        )

    # ------------------------------------------------------------------ bounded history

    def _history_full(self) -> bool:
        """This run's history passed the case's limits, or Temporal suggests a new run."""
        if not self._bounded:
            return False
        info, limits = workflow.info(), self._case.history
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= limits.continue_after_events
            or info.get_current_history_size() >= limits.continue_after_bytes
        )

    async def _wait(self, done: Callable[[], bool]) -> None:
        """Wait until `done`; a run whose history fills up meanwhile hands the case on."""
        await workflow.wait_condition(lambda: done() or self._history_full())
        if not done():
            await self._continue_as_new()

    async def _continue_if_due(self) -> None:
        if self._history_full():
            await self._continue_as_new()

    async def _continue_as_new(self) -> NoReturn:
        """Hand the case to a fresh run of the same workflow id, at a safe point: `run` is between
        actions or waiting for a decision, no activity of it is running, no notification is on its
        way and every handler has finished. Timers are not carried: the next run waits for the same
        deadline and next reminder. Updates the server admitted but this run had not seen go to the
        next run; signals are never lost. The closing run stops showing a pending approval, so a
        list of waiting cases names the case once."""
        await workflow.wait_condition(lambda: self._notifying == 0 and workflow.all_handlers_finished())
        if self._published.get(sa.PENDING_APPROVAL.name):
            workflow.upsert_search_attributes([sa.PENDING_APPROVAL.value_set(False)])
        workflow.logger.info("continuing as new", extra={"run": self._run_number + 1, "alerts": len(self._alerts)})
        workflow.continue_as_new(
            self._case.model_copy(update={"carried": self._carry()}),
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(u.key, u.value) for u in self._search_attributes().values()]
            ),
        )

    def _carry(self) -> CarriedCase:
        assert self._plan is not None and self._verdict is not None, "a case continues only once it has a plan"
        return CarriedCase(
            run=self._run_number + 1, started=self._started, stage=self._stage, alerts=self._alerts,
            alert_signals=self._alert_signals, ignored=self._ignored, connector=self._connector,
            verdict=self._verdict, plan=self._plan, records=list(self._records.values()), notes=self._notes,
            deadline=self._deadline, trust=self._trust, nonces=sorted(self._nonces),
            case_accounts=self._case_accounts, withdrawn=self._withdrawn, trail=self._trail,
            reminders=self._reminders, reminder_due=self._reminder_due, write_backs=self._write_backs,
        )

    def _restore(self, carried: CarriedCase) -> None:
        self._run_number = carried.run
        self._started = carried.started
        self._stage = carried.stage
        self._alerts = list(carried.alerts)
        self._absorbed = set(self._alerts)
        self._alert_signals = carried.alert_signals
        self._ignored = carried.ignored.model_copy(deep=True)
        self._connector = carried.connector
        self._verdict = carried.verdict
        self._plan = carried.plan
        self._records = {r.action.id: r for r in carried.records}
        self._notes = dict(carried.notes)
        self._deadline = carried.deadline
        self._trust = carried.trust
        self._nonces = set(carried.nonces)
        self._case_accounts = list(carried.case_accounts)
        self._withdrawn = list(carried.withdrawn)
        self._trail = list(carried.trail)
        self._reminders = carried.reminders
        self._reminder_due = carried.reminder_due
        self._write_backs = {k: v.model_copy(deep=True) for k, v in carried.write_backs.items()}

    # ------------------------------------------------------------------ queries and helpers

    @workflow.query(name="status")
    def status(self) -> CaseSummary:
        return CaseSummary(
            case_id=workflow.info().workflow_id,
            tenant_id=self._case.tenant_id,
            stage=self._stage,
            status=self._case_status(),
            connector=self._connector.name if self._connector else None,
            verdict=self._verdict.kind if self._verdict else None,
            alerts=list(self._alerts),
            pending=self.pending(),
        )

    @workflow.query(name="pending")
    def pending(self) -> list[PendingApproval]:
        if self._plan is None:
            return []
        return approvals.pending(
            workflow.info().workflow_id, self._plan, self._records, self._case.policy, self._deadline
        )

    @workflow.query(name="report")
    def report(self) -> CaseReport:
        return self._report()

    def _report(self) -> CaseReport:
        verdict = self._verdict
        return CaseReport(
            case_id=workflow.info().workflow_id,
            tenant_id=self._case.tenant_id,
            alerts=list(self._alerts),
            case_status=self._case_status(),
            mode=self._case.mode,
            connector=self._connector.name if self._connector else None,
            connector_config=self._connector,
            verdict=verdict.kind if verdict else "needs_review",
            findings=verdict.findings if verdict else [],
            reasons=verdict.reasons if verdict else [],
            plan_hash=self._plan.hash if self._plan else None,
            actions=list(self._records.values()),
            notes={**self._notes, "ignored_signals": self._ignored.last, "ignored_signals_count": self._ignored.count,
                   "alert_signals": self._alert_signals, "runs": self._run_number,
                   "withdrawn_approvals": self._withdrawn, "related_cases": self._case.related_cases},
            started_at=self._started,
            finished_at=self._finished,
        )

    def _case_status(self):
        if any(r.status == "failed" for r in self._records.values()):
            return "needs_manual"
        return "completed" if self._stage == "closed" else "running"

    def _set_stage(self, stage: CaseStage) -> None:
        self._stage = stage
        self._upsert_now(sa.STAGE.value_set(stage))

    def _refresh_pending(self) -> None:
        waiting = any(r.status == "awaiting_approval" for r in self._records.values())
        self._upsert_now(sa.PENDING_APPROVAL.value_set(waiting))

    def _connector_key(self, connector: ConnectorConfig) -> str:
        return connector.guid if self._connector_by_guid else connector.name

    def _upsert_now(self, update: SearchAttributeUpdate) -> None:
        """Cases started before PUBLISH_ONCE_PER_TASK upsert at every change; later ones leave it to `_publish`."""
        if not self._publishing:
            workflow.upsert_search_attributes([update])

    # ------------------------------------------------------------------ what the UI shows

    def _search_attributes(self) -> dict[str, SearchAttributeUpdate]:
        """The search attributes as the case's state says they are (workflows/search_attributes.py)."""
        values = [
            sa.TENANT.value_set(self._case.tenant_id),
            sa.STAGE.value_set(self._stage),
            sa.PENDING_APPROVAL.value_set(bool(self._undecided())),
        ]
        if self._connector is not None:
            values.append(sa.CONNECTOR.value_set(self._connector_key(self._connector)))
        if self._verdict is not None:
            values.append(sa.VERDICT.value_set(self._verdict.kind))
        return {update.key.name: update for update in values}

    def _view(self) -> tuple[str, dict[str, SearchAttributeUpdate]]:
        details = case_view.current_details(case_view.CaseView(
            stage=self._stage,
            verdict=self._verdict.kind if self._verdict else None,
            connector=self._connector.name if self._connector else None,
            alerts=self._alerts,
            records=list(self._records.values()),
            undecided=self._undecided(),
            trail=list(self._trail),
            policy=self._case.policy,
            deadline=self._deadline,
            plan_hash=self._plan.hash if self._plan else None,
        ))
        if self._run_number > 1:
            details = f"{case_view.continued(self._case, self._run_number)}\n\n{details}"
        attributes = self._search_attributes() if self._publishing else {}
        changed = {name: u for name, u in attributes.items() if self._published.get(name) != u.value}
        return details, changed

    def _changed(self) -> bool:
        details, attributes = self._view()
        return bool(attributes) or details != workflow.get_current_details()

    async def _publish(self) -> None:
        """Show the case's state in the UI: current details, and search attributes in one upsert.

        Wakes when something shown changed, then lets every coroutine the same condition check woke
        run first (`sleep(0)` queues it behind them), so a workflow task that changes the stage, the
        verdict and the pending flag leaves one "Upsert Workflow Search Attributes" event, not three.
        That holds because every coroutine changes what is shown before it wakes another: the
        decision handlers and `_remind` change records, `run` the stage, and `run` closes the case
        before it waits for `_remind` to finish."""
        while True:
            await workflow.wait_condition(self._changed)
            await asyncio.sleep(0)
            self._publish_changes()

    def _publish_changes(self) -> None:
        details, attributes = self._view()
        workflow.set_current_details(details)
        if attributes:
            workflow.upsert_search_attributes(list(attributes.values()))
            self._published.update({name: u.value for name, u in attributes.items()})

    async def _notify(self, kind: str, records: list[ActionRecord]) -> None:
        if not records:
            return
        case_id = workflow.info().workflow_id
        lines = ", ".join(f"{r.action.id} {r.action.kind} {r.action.target}".strip() for r in records)
        text = {
            "approval_requested": f"quell case {case_id}: approval needed for {lines}",
            "reminder": f"Reminder, quell case {case_id} still waits for approval of {lines}",
            "escalation": f"ESCALATION: quell case {case_id} has waited too long for {lines}",
            "expired": f"quell case {case_id}: approval expired for {lines}",
        }[kind]
        self._notifying += 1  # a run does not continue as new while a notification is on its way
        try:
            await workflow.execute_activity_method(
                NotifyActivities.send,
                Notification(
                    case_id=case_id, kind=kind, text=text, action_ids=[r.action.id for r in records],
                    tenant_id=self._case.tenant_id,
                    actions=[NotifiedAction(id=r.action.id, kind=r.action.kind, target=r.action.target,
                                            reason=r.action.reason, policy=r.action.policy) for r in records],
                    plan_hash=self._plan.hash if self._plan else None,
                    verdict=self._verdict.kind if self._verdict else None,
                    findings=[f.summary for f in self._verdict.findings] if self._verdict else [],
                    expires_at=self._deadline,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retries.NOTIFY,
                summary=f"{kind.replace('_', ' ')}: {', '.join(r.action.id for r in records)}",
            )
        except ActivityError:
            # A lost reminder must not stop the case; the pending list stays queryable.
            workflow.logger.warning("notification failed", extra={"kind": kind})
        finally:
            self._notifying -= 1
