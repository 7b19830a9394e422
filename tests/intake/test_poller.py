"""The alerts_v2 poller: what one pass feeds, and a schedule's cursor across runs, worker
restarts and a failed pass (real dev server, real worker, the emulator's alerts_v2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import uuid

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities import cases
from activities.alert_parsing import from_graph_alert
from activities.alerts import AlertActivities
from activities.clients import ClientPool
from config.settings import PollerSettings, Settings, TenantSettings
from emulator.server import serving_emulator
from workers import schedules
from workers.scenarios import RunOptions, poll_once, scenario_settings
from workers.worker import new_worker
from workflows.case import ConnectorCaseWorkflow
from workflows.poller import LIST_ACTIVITY, OPEN_ACTIVITY, AlertPollerWorkflow, advance, poller_schedule_id
from workflows.types import AlertRef, OpenedCase, PollCursor, PollerInput, PollerResult
from tests.conftest import eventually
from tests.intake.conftest import TOKENS, graph_alert, scenario, stack_for

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def test_cursor_advances_to_the_newest_alert_and_remembers_only_the_overlap():
    cursor = PollCursor(since=NOW, seen={"old": NOW - timedelta(minutes=10), "recent": NOW - timedelta(minutes=1)})
    after = advance(cursor, {"a": NOW + timedelta(minutes=2), "b": NOW + timedelta(minutes=1)}, timedelta(minutes=5))
    assert after.since == NOW + timedelta(minutes=2)
    assert set(after.seen) == {"recent", "a", "b"}  # "old" fell out of the 5-minute window
    assert advance(after, {}, timedelta(minutes=5)) == after  # an empty pass changes nothing


async def test_one_pass_feeds_connector_alerts_through_the_intake_path(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir) as stack:
        alerts = stack.emulator.state.data.alerts
        late = datetime.now(timezone.utc)
        alerts["not-ours"] = graph_alert("not-ours", "203.0.113.7", late, tenantId=tenant,
                                         title="Email messages containing malicious URL removed after delivery")
        alerts["endpoint"] = graph_alert("endpoint", "203.0.113.7", late, tenantId=tenant,
                                         serviceSource="microsoftDefenderForEndpoint")
        alerts["other-tenant"] = graph_alert("other-tenant", "203.0.113.7", late, tenantId="99999999-0000-0000-0000-000000000000")
        alerts["no-evidence"] = graph_alert("no-evidence", "203.0.113.7", late, tenantId=tenant, evidence=[])

        result = await poll_once(client, stack)

        # Only the scenario's alert is fed; its case is the one the webhook would open.
        assert [c.alert_id for c in result.cases] == [found.alert["id"]]
        webhook_case = cases.case_id(from_graph_alert(found.alert, tenant, source="webhook"))
        assert result.cases[0].case_id == webhook_case
        assert {s.alert_id: s.reason for s in result.skipped} == {
            "other-tenant": "alert names another tenant",
            "no-evidence": "the alert carries no ipEvidence or analyzedMessageEvidence to find the connector by",
        }
        # Filtered on the server by service source and time; the cursor is the newest alert seen.
        listed = stack.emulator.state.calls_matching("graph:GET /security/alerts_v2")
        assert "serviceSource eq 'microsoftDefenderForOffice365' and createdDateTime ge " in listed[0]["query"]
        assert "$orderby=createdDateTime asc" in listed[0]["query"]
        assert result.cursor.since >= late - timedelta(seconds=1)
        report = await cases.handle(client, webhook_case).result()
        assert report.alerts == [found.alert["id"]] and report.verdict == "false_positive"


class RecordingOpen:
    """Stands in for `alerts.open-case`: what the poller feeds, in order."""

    def __init__(self) -> None:
        self.fed: list[str] = []

    @activity.defn(name=OPEN_ACTIVITY)
    async def open_case(self, alert: AlertRef) -> OpenedCase:
        self.fed.append(alert.alert_id)
        return OpenedCase(case_id=f"recorded/{alert.alert_id}", alert_id=alert.alert_id, tenant_id=alert.tenant_id)


async def test_a_pass_stopped_at_max_pages_leaves_the_rest_to_the_next_pass(client, cert_dir):
    """30 alerts, 10 a page, 2 pages a pass: two passes feed all 30 oldest first, none twice,
    also where alerts created in the same instant straddle a page and a pass boundary."""
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    async with serving_emulator(found, cert_dir) as emulator:
        settings = scenario_settings(found, emulator.base_url, RunOptions(), TOKENS)
        alerts = emulator.state.data.alerts
        alerts.clear()
        start = datetime.now(timezone.utc) - timedelta(minutes=3)  # all inside one overlap window
        instants = [start + timedelta(seconds=n - (n in (10, 20))) for n in range(30)]  # 9|10 and 19|20 tie
        ids = [f"storm-{n:02d}" for n in range(30)]
        for alert_id, created in zip(ids, instants):
            alerts[alert_id] = graph_alert(alert_id, "203.0.113.7", created, tenantId=tenant)
        recorder, pool = RecordingOpen(), ClientPool(settings.tenants)
        queue = settings.temporal.task_queue
        listing = AlertActivities(settings, pool, client)
        request = PollerInput(tenant_id=tenant, max_pages=2, page_size=10)

        async def one_pass(request: PollerInput) -> PollerResult:
            return await client.execute_workflow(
                AlertPollerWorkflow.run, request, id=f"poller-test-{uuid.uuid4().hex[:8]}", task_queue=queue,
            )

        try:
            async with Worker(client, task_queue=queue, workflows=[AlertPollerWorkflow],
                              activities=[listing.list_new, recorder.open_case]):
                first = await one_pass(request)
                assert [c.alert_id for c in first.cases] == ids[:20] and first.cursor.more
                second = await one_pass(request.model_copy(update={"cursor": first.cursor}))
                assert [c.alert_id for c in second.cases] == ids[20:] and not second.cursor.more
                # The third re-reads the overlap window (two pages, all fed already): nothing new.
                third = await one_pass(request.model_copy(update={"cursor": second.cursor}))
                assert third.cases == [] and third.cursor.since == second.cursor.since
        finally:
            await pool.aclose()
        assert recorder.fed == ids  # each once, oldest first
        pages = emulator.state.calls_matching("graph:GET /security/alerts_v2")
        assert ["$skiptoken=" in call["query"] for call in pages] == [False, True] * 3  # two pages a pass
        assert all("$top=10" in call["query"] for call in pages)


async def test_one_pass_of_three_pages_feeds_thirty_alerts_oldest_first_once_each(client, cert_dir):
    """30 alerts, 10 a page, 3 pages a pass: one pass feeds all 30 through the real open-case
    activity, oldest first, none twice, also where alerts created in the same instant straddle a
    page boundary. They share the connector's IP, so they meet in one case (waiting for an
    analyst, so it is still open), which lists them in that order."""
    found = scenario("fp-scanner-relay-normal-traffic", mode="enforce")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir, approval_timeout=300) as stack:
        alerts = stack.emulator.state.data.alerts
        alerts.clear()
        start = datetime.now(timezone.utc) - timedelta(minutes=3)
        instants = [start + timedelta(seconds=n - (n in (10, 20))) for n in range(30)]  # 9|10 and 19|20 tie
        ids = [f"page-{n:02d}" for n in range(30)]
        for alert_id, created in zip(ids, instants):
            alerts[alert_id] = graph_alert(alert_id, "203.0.113.7", created, tenantId=tenant)

        result = await client.execute_workflow(
            AlertPollerWorkflow.run, PollerInput(tenant_id=tenant, max_pages=3, page_size=10),
            id=f"poller-test-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.temporal.task_queue,
        )
        case = cases.handle(client, result.cases[0].case_id)
        try:
            assert [c.alert_id for c in result.cases] == ids and not result.cursor.more
            assert {c.case_id for c in result.cases} == {case.id}
            assert not any(c.duplicate for c in result.cases)
            assert (await cases.status(client, case.id)).alerts == ids
        finally:
            await case.terminate("test done")
        pages = stack.emulator.state.calls_matching("graph:GET /security/alerts_v2")
        assert ["$skiptoken=" in call["query"] for call in pages] == [False, True, True]
        assert all("$top=10" in call["query"] for call in pages)


async def _next_run(client: Client, schedule_id: str, before: int) -> PollerResult:
    """Wait for the schedule's next action to start and finish; its result."""
    handle = client.get_schedule_handle(schedule_id)
    described = await eventually(handle.describe, lambda d: len(d.info.recent_actions) > before)
    action = described.info.recent_actions[-1].action
    run = client.get_workflow_handle_for(
        AlertPollerWorkflow.run, action.workflow_id, run_id=action.first_execution_run_id
    )
    return await run.result()


class FailingList:
    @activity.defn(name=LIST_ACTIVITY)
    async def list_new(self, request) -> None:
        raise ApplicationError("Graph is down for this test", type="GraphHttp500", non_retryable=True)


async def test_schedule_keeps_its_cursor_across_worker_restarts_and_failed_passes(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    schedule_id = poller_schedule_id(tenant)
    async with serving_emulator(found, cert_dir) as emulator:
        settings = scenario_settings(found, emulator.base_url, RunOptions(approval_timeout=1.0), TOKENS)
        settings = settings.model_copy(update={"poller": PollerSettings(every=timedelta(days=365), initial_lookback=timedelta(days=7))})
        queue = settings.temporal.task_queue
        pool = ClientPool(settings.tenants)
        await schedules.install(client, settings, [tenant], task_queue=queue)
        handle = client.get_schedule_handle(schedule_id)
        await handle.pause(note="driven by the test")  # only triggers run it
        try:
            # Pass 1 (worker 1): finds the scenario's alert, opens its case.
            async with new_worker(client, settings, pool):
                await handle.trigger()
                first = await _next_run(client, schedule_id, 0)
                assert [c.alert_id for c in first.cases] == [found.alert["id"]]
                await cases.handle(client, first.cases[0].case_id).result()

            # Pass 2 (worker 2, a new process as far as Temporal knows): the cursor came from
            # the server, so the same alert is not fed again.
            async with new_worker(client, settings, pool):
                await handle.trigger()
                second = await _next_run(client, schedule_id, 1)
                assert second.cases == [] and second.cursor == first.cursor

            # A new alert arrives; pass 3 fails (Graph down), pass 4 continues from pass 2's
            # cursor, so the alert is fed exactly once and nothing older is re-fed.
            emulator.state.data.alerts["late-1"] = graph_alert("late-1", "203.0.113.7", tenantId=tenant)
            failing = Worker(
                client, task_queue=queue, workflows=[AlertPollerWorkflow, ConnectorCaseWorkflow],
                activities=[FailingList().list_new],
            )
            async with failing:
                await handle.trigger()
                described = await eventually(handle.describe, lambda d: len(d.info.recent_actions) > 2)
                action = described.info.recent_actions[-1].action
                failed = client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id)
                await eventually(failed.describe, lambda d: d.status == WorkflowExecutionStatus.FAILED)
            async with new_worker(client, settings, pool):
                await handle.trigger()
                fourth = await _next_run(client, schedule_id, 3)
                assert [c.alert_id for c in fourth.cases] == ["late-1"]
                # The first case closed: the new one starts and names it as related.
                assert fourth.cases[0].related_cases == [f"{first.cases[0].case_id}@{first.cases[0].run_id}"]
                report = await cases.handle(client, fourth.cases[0].case_id).result()
                assert report.notes["related_cases"] == fourth.cases[0].related_cases
        finally:
            await handle.delete()
            await pool.aclose()


async def test_install_is_idempotent_and_keeps_a_pause(client):
    settings = Settings(tenants=[TenantSettings(tenant_id="33333333-0000-0000-0000-000000000003", client_id="c", client_secret="s")])
    tenant = settings.tenants[0].tenant_id
    handle = client.get_schedule_handle(poller_schedule_id(tenant))
    await schedules.install(client, settings, task_queue="quell-install-test")
    try:
        await handle.pause(note="operator pause")
        changed = settings.model_copy(update={"poller": PollerSettings(every=timedelta(minutes=7))})
        assert await schedules.install(client, changed, task_queue="quell-install-test") == [poller_schedule_id(tenant)]
        described = await handle.describe()
        assert described.schedule.state.paused
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=7)
    finally:
        await handle.delete()
