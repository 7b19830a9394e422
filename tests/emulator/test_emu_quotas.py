"""Quotas: past a family's limit the tenant answers 429 with Retry-After in Microsoft's shapes; a
request sent again before the Retry-After it got ran out is recorded as an early retry, and any call
of the family meanwhile as a call while throttled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emu_client import Api

from emulator.quotas import Throttling
from emulator.scenario import MICROSOFT_QUOTAS, Fault, Quota, Quotas, Scenario, ScenarioError, load_scenario
from emulator.server import running_emulator
from tests.emulator.test_emu_scenario import MINIMAL

HUNT = {"Query": "EmailEvents | count"}


@pytest.fixture
def quota_of_three(example: Scenario, cert_dir: Path) -> Iterator[Api]:
    """Three hunting calls a minute: the fourth within the minute is refused."""
    quotas = Quotas(hunting=Quota(calls=3, window_s=60))
    with running_emulator(example, cert_dir, quotas=quotas) as handle:
        client = Api(handle)
        yield client
        client.http.close()


def test_past_the_quota_hunting_answers_429_with_retry_after_and_other_families_go_on(quota_of_three: Api) -> None:
    api = quota_of_three
    assert [api.graph("POST", "/security/runHuntingQuery", json=HUNT).status_code for _ in range(3)] == [200] * 3
    refused = api.graph("POST", "/security/runHuntingQuery", json=HUNT)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert 59 <= int(refused.headers["Retry-After"]) <= 60  # whole seconds until the first call leaves the window
    # Graph and Exchange calls have no quota here.
    assert api.graph("GET", "/users/exadmin@contoso.com").status_code == 200
    assert api.exo("Get-AcceptedDomain").status_code == 200
    other = api.graph("POST", "/security/runHuntingQuery", json={"Query": "EmailEvents | take 1"})
    again = api.graph("POST", "/security/runHuntingQuery", json=HUNT)  # before the Retry-After ran out
    assert other.status_code == again.status_code == 429

    state = api.state()
    assert state["throttling"]["hunting"] == {
        "quota": {"calls": 3, "window_s": 60.0}, "calls": 6, "throttled": 3, "early_retries": 1, "while_throttled": 2}
    assert state["throttling"]["graph"] == {
        "quota": None, "calls": 1, "throttled": 0, "early_retries": 0, "while_throttled": 0}
    hunts = api.handle.state.calls_matching("graph:POST /security/runHuntingQuery")
    assert [(c["status"], c["early_retry"], c["while_throttled"], c["family"]) for c in hunts] == [
        (200, False, False, "hunting"), (200, False, False, "hunting"), (200, False, False, "hunting"),
        (429, False, False, "hunting"), (429, False, True, "hunting"), (429, True, True, "hunting")]


def test_a_json_batch_counts_its_requests_one_by_one_and_its_envelope_not_at_all(example: Scenario, cert_dir: Path) -> None:
    with running_emulator(example, cert_dir, quotas=Quotas(graph=Quota(calls=3, window_s=60))) as handle:
        api = Api(handle)
        reads = [{"id": str(i), "method": "GET", "url": "/users/exadmin@contoso.com"} for i in range(4)]
        batch = api.graph("POST", "/$batch", json={"requests": reads})
        assert batch.status_code == 200
        assert sorted((a["id"], a["status"]) for a in batch.json()["responses"]) == [
            ("0", 200), ("1", 200), ("2", 200), ("3", 429)]
        assert api.state()["throttling"]["graph"]["calls"] == 4


def test_exchange_past_its_quota_answers_exchanges_throttling_error(example: Scenario, cert_dir: Path) -> None:
    with running_emulator(example, cert_dir, quotas=Quotas(exchange=Quota(calls=1, window_s=300))) as handle:
        api = Api(handle)
        assert api.exo("Get-AcceptedDomain").status_code == 200
        refused = api.exo("Get-InboundConnector")
        api.http.close()
    assert refused.status_code == 429
    assert "ThrottlingException" in refused.json()["error"]["details"][0]["message"]
    assert 299 <= int(refused.headers["Retry-After"]) <= 300


def test_a_request_sent_again_before_a_faults_retry_after_ran_out_is_an_early_retry(
        example: Scenario, cert_dir: Path) -> None:
    fault = Fault(api="exo:Set-InboundConnector", status=503, times=1, retry_after_s=30)
    with running_emulator(example.model_copy(update={"faults": [fault]}), cert_dir) as handle:
        api = Api(handle)
        assert api.exo("Set-InboundConnector", Identity="Contoso Hybrid", Comment="one").status_code == 503
        assert api.exo("Get-InboundConnector").status_code == 200  # another request of the family: while throttled
        assert api.graph("GET", "/users/exadmin@contoso.com").status_code == 200  # another family
        again = api.exo("Set-InboundConnector", Identity="Contoso Hybrid", Comment="one")  # 30 s too early
        assert again.status_code == 200
        summary = api.state()["throttling"]
        api.http.close()
    assert summary["exchange"] == {"quota": None, "calls": 3, "throttled": 0, "early_retries": 1, "while_throttled": 2}
    assert summary["graph"]["early_retries"] == summary["graph"]["while_throttled"] == 0


def test_the_window_slides_and_a_throttled_app_waits_out_its_retry_after() -> None:
    throttling = Throttling(Quotas(hunting=Quota(calls=2, window_s=10)))
    admit = [throttling.admit("hunting", "app", at) for at in (0.0, 4.0, 6.0)]
    assert admit == [None, None, 4]  # the call at 0 leaves the window at 10
    throttling.answered("hunting", "app", "query", 6.0, 429, "4")
    assert throttling.arrived("hunting", "app", "query", 9.0) == (True, True)
    assert throttling.admit("hunting", "app", 9.0) == 1  # still throttled, though the window has room at 10
    assert throttling.arrived("hunting", "app", "query", 10.0) == (False, False)
    assert throttling.admit("hunting", "app", 10.0) is None  # the call at 0 left; refused calls never entered
    assert throttling.admit("hunting", "app", 11.0) == 3  # the window holds 4 and 10
    assert throttling.admit("hunting", "other-app", 14.5) is None  # the call at 4 left; one window for all apps
    assert throttling.summary()["hunting"]["early_retries"] == 1


def test_scenarios_name_quotas_by_preset_or_per_family() -> None:
    assert load_scenario(MINIMAL).quotas == Quotas()  # off unless named
    assert load_scenario(MINIMAL + "quotas: microsoft\n").quotas == MICROSOFT_QUOTAS
    given = load_scenario(MINIMAL + "quotas: {hunting: {calls: 6, window_s: 1.5}}\n").quotas
    assert given == Quotas(hunting=Quota(calls=6, window_s=1.5))
    with pytest.raises(ScenarioError, match="quotas: Value error, 'unlimited' is no quota preset"):
        load_scenario(MINIMAL + "quotas: unlimited\n")
    with pytest.raises(ScenarioError, match=r"quotas\.hunting\.calls: Input should be greater than or equal to 1"):
        load_scenario(MINIMAL + "quotas: {hunting: {calls: 0, window_s: 60}}\n")
