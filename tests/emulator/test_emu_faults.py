"""Injected faults: how many calls fail, which ones, with what answer, and ignored writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emu_client import Api

from emulator.faults import api_matches
from emulator.scenario import Fault, Scenario
from emulator.server import running_emulator

HELPDESK = "2a7d5b20-0000-4000-8000-000000000002"


@pytest.fixture
def faulty(example: Scenario, cert_dir: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    scenario = example.model_copy(update={"faults": [Fault.model_validate(f) for f in request.param]})
    with running_emulator(scenario, cert_dir) as handle:
        client = Api(handle)
        yield client
        client.http.close()


def with_faults(*faults: dict):
    return pytest.mark.parametrize("faulty", [list(faults)], indirect=True)


@with_faults({"api": "exo:Set-InboundConnector", "status": 429, "times": 2, "retry_after_s": 3})
def test_the_first_n_matching_calls_fail_with_retry_after(faulty: Api) -> None:
    answers = [faulty.exo("Set-InboundConnector", Identity="Contoso Hybrid", Comment=f"try {i}") for i in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json()["error"]["message"] == "Error executing cmdlet"
    assert faulty.exo("Get-InboundConnector").status_code == 200  # other cmdlets are untouched
    assert [c["status"] for c in faulty.handle.state.calls_matching("exo:Set-InboundConnector")] == [429, 429, 200]
    assert faulty.state()["tenant"]["inbound_connectors"][0]["Comment"] == "try 2"


@with_faults({"api": "graph:POST /users/{id}/revokeSignInSessions", "status": 503, "times": 1},
             {"api": "graph:POST /security/runHuntingQuery", "status": 500, "match": "IdentityLogonEvents"})
def test_graph_faults_by_path_pattern_and_body_match(faulty: Api) -> None:
    first = faulty.graph("POST", f"/users/{HELPDESK}/revokeSignInSessions")
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert first.json()["error"]["code"] == "ServiceNotAvailable"
    assert faulty.graph("POST", f"/users/{HELPDESK}/revokeSignInSessions").status_code == 200
    for _ in range(2):  # no `times`: every matching call fails
        failing = faulty.graph("POST", "/security/runHuntingQuery", json={"Query": "IdentityLogonEvents | count"})
        assert failing.status_code == 500 and "Retry-After" not in failing.headers
    working = faulty.graph("POST", "/security/runHuntingQuery", json={"Query": "EmailEvents | count"})
    assert working.status_code == 200


@with_faults({"api": "exo:Set-InboundConnector", "effect": "ignore", "times": 1},
             {"api": "graph:PATCH /security/alerts_v2/{id}", "effect": "ignore"})
def test_ignored_writes_answer_success_and_change_nothing(faulty: Api) -> None:
    ignored = faulty.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses=["203.0.113.5"])
    assert ignored.status_code == 200
    state = faulty.state()
    assert state["tenant"]["inbound_connectors"][0]["SenderIPAddresses"] == ["198.51.100.23"]
    assert len(state["audit_log"]) == 2  # no audit record either: nothing happened
    assert faulty.exo("Set-InboundConnector", Identity="Contoso Hybrid", SenderIPAddresses=["203.0.113.5"]).status_code == 200
    assert faulty.state()["tenant"]["inbound_connectors"][0]["SenderIPAddresses"] == ["203.0.113.5"]
    alert = faulty.graph("PATCH", "/security/alerts_v2/da637f1e2c3b4a5d6e7f80910", json={"status": "resolved"})
    assert alert.status_code == 200 and alert.json()["status"] == "resolved"  # the answer claims success
    assert faulty.state()["alerts"]["da637f1e2c3b4a5d6e7f80910"]["status"] == "new"


@pytest.mark.parametrize(
    ("pattern", "api", "hit"),
    [
        ("exo:Set-InboundConnector", "exo:set-inboundconnector", True),
        ("exo:Set-InboundConnector", "exo:Set-OutboundConnector", False),
        ("graph:POST /users/{id}/revokeSignInSessions", "graph:POST /users/abc/revokeSignInSessions", True),
        ("graph:POST /users/{id}/revokeSignInSessions", "graph:POST /users/abc/def/revokeSignInSessions", False),
        ("graph:PATCH /users/{id}", "graph:GET /users/abc", False),
        ("graph:GET /security/alerts_v2", "graph:GET /security/alerts_v2", True),
        ("graph:GET /users/{x}", "exo:Get-User", False),
    ],
)
def test_api_patterns(pattern: str, api: str, hit: bool) -> None:
    assert api_matches(pattern, api) is hit


@with_faults({"api": "graph:GET /security/alerts_v2/{id}", "status": 429, "times": 1, "retry_after_s": 7})
def test_a_request_throttled_inside_a_json_batch_answers_its_own_429(faulty: Api) -> None:
    requests = [{"id": str(n), "method": "GET", "url": "/security/alerts_v2/da637f1e2c3b4a5d6e7f80910"} for n in (1, 2)]
    answer = faulty.http.post("/v1.0/$batch", json={"requests": requests},
                              headers={"Authorization": f"Bearer {faulty.graph_token}"})
    assert answer.status_code == 200
    first, second = answer.json()["responses"]
    assert first["status"] == 429 and first["headers"]["retry-after"] == "7"
    assert first["body"]["error"]["code"] == "TooManyRequests"
    assert second["status"] == 200
