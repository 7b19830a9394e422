"""A 429's Retry-After holds on every client quell has: InvokeCommand, raw Graph (GraphHttp) and the
Graph SDK (msgraph-sdk) are retried by Temporal no sooner than the tenant said, even where the retry
policy's backoff (1 s first) would come back earlier, and the case still does what it should."""

from __future__ import annotations

import secrets

import httpx
import pytest

from emulator.expectations import judge
from emulator.scenario import Fault, load_scenario
from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import (
    RunOptions,
    answer_until_closed,
    deliver_alert,
    isolated_namespace,
    result_json,
    tenant_stack,
)

RETRY_AFTER = 3
THROTTLED = {  # calls of actions, which run one at a time: nothing else of their family runs meanwhile
    "exo:Set-InboundConnector": "exchange",  # InvokeCommand (ExoClient)
    "graph:POST /security/alerts_v2/{id}/comments": "security",  # raw Graph (GraphHttp)
    "graph:POST /users/{id}/revokeSignInSessions": "graph",  # the Graph SDK
}


@pytest.mark.parametrize("paced", [False, True], ids=["unpaced", "paced"])
async def test_a_throttled_call_comes_back_after_retry_after_on_every_client(client, cert_dir, paced):
    """Unpaced, only the retry's `next_retry_delay` keeps it back; paced, the pacer also holds every
    turn of the family until the Retry-After has passed."""
    scenario = load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml")
    scenario = scenario.model_copy(update={"faults": [
        Fault(api=api, status=429, times=1, retry_after_s=RETRY_AFTER) for api in THROTTLED]})
    token = secrets.token_urlsafe(16)
    async with isolated_namespace(client) as namespace:
        options = RunOptions(approval_timeout=60, paced=paced)
        async with tenant_stack(namespace, scenario, options, {"runner": token}, cert_dir) as stack:
            intake_app = httpx.ASGITransport(app=stack.intake)
            async with httpx.AsyncClient(transport=intake_app, base_url="http://intake") as intake:
                [case] = await deliver_alert(intake, namespace, stack, token)
            report = await answer_until_closed(namespace, case, scenario, stack.analysts, timeout=120)
            result = result_json(scenario, report, stack.emulator_state(), cases_started=1)
            state = stack.emulator.state

    assert judge(scenario.expected, result) == []
    assert report.case_status == "completed"
    for api in THROTTLED:
        assert [c["status"] < 400 for c in state.calls_matching(api)] == [False, True], api
    throttling = state.throttling.summary()
    assert [throttling[f]["throttled"] for f in ("exchange", "security", "graph")] == [1, 1, 1]
    # No call of a throttled family reached the tenant before the Retry-After it was given ran out.
    assert all(family["early_retries"] == 0 for family in throttling.values())
