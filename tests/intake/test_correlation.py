"""Correlation at intake: repeats join, closed cases are named (or recognised as duplicates), and a
Temporal outage answers 503 without a retry ever making a second case."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities import cases
from workers.intake import create_app
from workers.scenarios import sentinel_incident
from tests.intake.conftest import DEFENDER, intake_client, runs, scenario, stack_for


def _runs_of(case: str, queue: str) -> str:
    return f"WorkflowId = '{case}' AND TaskQueue = '{queue}'"


async def test_closed_case_is_named_by_the_next_case_and_a_late_repeat_is_not_a_new_case(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir) as stack, intake_client(stack.intake) as intake:
        post = lambda body: intake.post("/v1/alerts", params={"tenant": tenant}, json=body, headers=DEFENDER)  # noqa: E731
        first = (await post(found.alert)).json()["accepted"][0]
        assert first["related_cases"] == [] and not first["duplicate"]
        await cases.handle(client, first["case_id"]).result()

        # The same alert again, after its case closed (Defender re-sends; Sentinel re-triggers).
        late = await post(sentinel_incident(found.alert))
        assert late.status_code == 202
        assert late.json()["accepted"][0] | {"related_cases": []} == {**first, "duplicate": True}

        # A new alert about the same connector starts a new case that names the closed one.
        second_alert = {**found.alert, "id": "da6380000000000000000fp02"}
        second = (await post(second_alert)).json()["accepted"][0]
        assert second["case_id"] == first["case_id"] and second["run_id"] != first["run_id"]
        assert second["related_cases"] == [f"{first['case_id']}@{first['run_id']}"]
        report = await cases.handle(client, second["case_id"]).result()
        assert report.notes["related_cases"] == second["related_cases"]
        assert report.alerts == ["da6380000000000000000fp02"]

        queue = stack.settings.temporal.task_queue
        assert len(await runs(client, _runs_of(first["case_id"], queue))) == 2

        # Outside the window nothing is related, and a repeat is handled as a new alert.
        narrow = stack.settings.model_copy(
            update={"intake": stack.settings.intake.model_copy(update={"related_window": timedelta(0)})})

        async def connect() -> Client:
            return client

        async with intake_client(create_app(narrow, connect)) as unrelated:
            third = await unrelated.post("/v1/alerts", params={"tenant": tenant}, json=found.alert, headers=DEFENDER)
            assert third.json()["accepted"][0]["related_cases"] == []
            await cases.handle(client, first["case_id"]).result()


class LaggingVisibility:
    """A Temporal client whose visibility has not indexed any close yet (Elasticsearch lags the
    history by a second or so): list queries find nothing."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def list_workflows(self, query: str) -> Any:
        self.queries += 1
        for _ in ():
            yield


async def test_a_new_alert_is_one_round_trip_and_a_late_repeat_is_known_before_visibility_is(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir) as stack:
        lagging = LaggingVisibility(client)

        async def connect() -> Any:
            return lagging

        async with intake_client(create_app(stack.settings, connect)) as intake:
            post = lambda body: intake.post("/v1/alerts", params={"tenant": tenant}, json=body, headers=DEFENDER)  # noqa: E731
            # A key no case ever had: the signal-with-start alone, no visibility query.
            fresh = {**found.alert, "id": "da6380000000000000000fp77",
                     "evidence": [{"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "192.0.2.77"}]}
            opened = (await post(fresh)).json()["accepted"][0]
            assert opened["related_cases"] == [] and not opened["duplicate"] and lagging.queries == 0
            await cases.handle(client, opened["case_id"]).result()
            # Its case closed; visibility does not know yet, the refused start names the run.
            late = (await post(fresh)).json()["accepted"][0]
            assert late == {**opened, "duplicate": True}
            again = (await post({**fresh, "id": "da6380000000000000000fp78"})).json()["accepted"][0]
            assert again["related_cases"] == [f"{opened['case_id']}@{opened['run_id']}"]
            await cases.handle(client, again["case_id"]).result()


class LostReply:
    """A Temporal client whose first signal-with-start reaches the server but whose reply is lost
    (the RPC fails after the case started), as when the connection drops mid-call."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        handle = await self._client.start_workflow(*args, **kwargs)
        if self.lost == 0:
            self.lost += 1
            raise RPCError("connection reset", RPCStatusCode.UNAVAILABLE, b"")
        return handle


async def test_temporal_down_answers_503_and_the_retry_makes_no_second_case(client, cert_dir):
    found = scenario("fp-scanner-relay-normal-traffic")
    tenant = found.tenant.id
    async with stack_for(client, found, cert_dir) as stack:
        attempts = {"connect": 0}
        flaky = LostReply(client)

        async def connect() -> Any:
            attempts["connect"] += 1
            if attempts["connect"] == 1:
                raise ConnectionError("Temporal is not up yet")
            return flaky

        async with intake_client(create_app(stack.settings, connect)) as intake:
            post = lambda: intake.post("/v1/alerts", params={"tenant": tenant}, json=found.alert, headers=DEFENDER)  # noqa: E731
            down = await post()
            assert down.status_code == 503 and "retry" in down.json()["detail"]
            lost = await post()  # Temporal is back; the case starts but the reply is lost
            assert lost.status_code == 503 and flaky.lost == 1
            retried = await post()  # the sender's retry
            assert retried.status_code == 202, retried.text
            again = await post()
            assert again.json()["accepted"][0]["case_id"] == retried.json()["accepted"][0]["case_id"]

        case = retried.json()["accepted"][0]["case_id"]
        assert len(await runs(client, _runs_of(case, stack.settings.temporal.task_queue))) == 1
        report = await cases.handle(client, case).result()
        assert report.alerts == [found.alert["id"]]
