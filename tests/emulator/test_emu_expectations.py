"""Judging results against `expected`: a passing result, and each kind of failure on its own."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from datetime import datetime, timezone

from emulator.expectations import judge, partial_match, tenant_calls
from emulator.scenario import Approvals, Scenario


def action(kind: str, target: str = "", status: str = "done", start: str = "10:00:00", end: str = "10:00:01") -> dict[str, Any]:
    return {"kind": kind, "target": target, "status": status, "approved_by": [], "verified": True,
            "started_at": f"2026-11-20T{start}Z", "finished_at": f"2026-11-20T{end}Z"}


def passing_result() -> dict[str, Any]:
    """What a correct run of the example reports."""
    return {
        "scenario": "tp-hijacked-hybrid-connector", "case_id": "c-1", "case_status": "completed",
        "verdict": "true_positive", "connector": "Contoso Hybrid",
        "findings": [{"id": f, "summary": "", "evidence": {}} for f in (
            "connector_modified", "change_by_unexpected_actor", "sender_ip_not_on_premises", "admin_unusual_location",
            "p1_p2_mismatch", "empty_sender_object_id", "volume_spike", "external_spray", "connector_blocked",
        )],
        "actions": [
            action("comment_alert"),
            action("revert_connector_change", "Contoso Hybrid", start="10:00:00", end="10:00:02"),
            action("reset_admin_password", "HelpDesk.Op@Contoso.com", start="10:00:03", end="10:00:04"),
            action("revoke_sessions", "helpdesk.op@contoso.com", start="10:00:04", end="10:00:05"),
            action("unblock_connector", "Contoso Hybrid", start="10:00:06", end="10:00:07"),
            action("unblock_sender", "billing@contoso.com", status="already_done", start="10:00:07", end="10:00:08"),
            action("require_admin_mfa", status="rejected", start="10:00:08", end="10:00:08"),
            action("disable_connector", "Contoso Hybrid", status="skipped"),
            action("classify_alert", start="10:00:09", end="10:00:10"),
        ],
        "alert": {"classification": "truePositive", "status": "resolved"},
        "cases_started": 1,
        "tenant": {
            "inbound_connectors": [
                {"Name": "Other", "Enabled": True, "SenderIPAddresses": ["203.0.113.5"]},
                {"Name": "Contoso Hybrid", "Enabled": True, "SenderIPAddresses": ["203.0.113.5"], "Comment": None},
            ],
            "outbound_connectors": [{"Name": "Outbound to Fabrikam (TLS)", "Enabled": True}],
            "blocked_connectors": [], "blocked_senders": [], "users": [], "conditional_access_policies": [],
        },
    }


def test_a_correct_result_passes(example: Scenario) -> None:
    assert judge(example.expected, passing_result()) == []


def broken(change) -> dict[str, Any]:
    result = passing_result()
    change(result)
    return result


def drop(kind: str):
    return lambda r: r.update(actions=[a for a in r["actions"] if a["kind"] != kind])


def set_status(kind: str, status: str):
    return lambda r: [a.update(status=status) for a in r["actions"] if a["kind"] == kind]


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        (lambda r: r.update(verdict="needs_review"), "verdict: expected true_positive, got needs_review"),
        (lambda r: r.update(connector="Contoso hybrid"), "connector: expected 'Contoso Hybrid'"),
        (lambda r: r["findings"].pop(), "findings_include: connector_blocked is not among the findings"),
        (lambda r: r["findings"].append({"id": "connector_created"}), "findings_exclude: connector_created"),
        (drop("unblock_sender"), "actions: no distinct executed action matches {\"kind\": \"unblock_sender\""),
        (set_status("revoke_sessions", "expired"), "actions: no distinct executed action matches {\"kind\": \"revoke_sessions\""),
        (lambda r: r["actions"].__setitem__(1, action("revert_connector_change", "Other")), "revert_connector_change"),
        (set_status("disable_connector", "done"), "actions_exclude: disable_connector was executed"),
        (lambda r: r["actions"][3].update(started_at="2026-11-20T10:00:06.5Z", finished_at="2026-11-20T10:00:06.9Z"),
         "order: revoke_sessions finished at"),
        (lambda r: r["actions"][1].update(finished_at=None), "order: revert_connector_change before unblock_connector"),
        (lambda r: r["alert"].update(status="inProgress"), "alert.status: expected \"resolved\", got \"inProgress\""),
        (lambda r: r["tenant"]["inbound_connectors"][1].update(SenderIPAddresses=["203.0.113.5", "198.51.100.23"]),
         "tenant.inbound_connectors: no distinct item matches"),
        (lambda r: r["tenant"]["blocked_senders"].append({"SenderAddress": "x@contoso.com"}),
         "tenant.blocked_senders: expected an empty list"),
        (lambda r: r["tenant"].pop("outbound_connectors"), "tenant.outbound_connectors: no distinct item matches"),
        (lambda r: r.update(cases_started=2), "cases_started: the alert deliveries started 2 cases"),
    ],
)
def test_each_kind_of_failure_is_reported(example: Scenario, change, failure: str) -> None:
    failures = judge(example.expected, broken(change))
    assert len(failures) == 1 and failure in failures[0], failures


def test_actions_match_distinct_executed_actions() -> None:
    expected = {"actions": [{"kind": "revoke_sessions"}, {"kind": "revoke_sessions"}]}
    one = {"actions": [action("revoke_sessions", "a@contoso.com")]}
    two = {"actions": [action("revoke_sessions", "a@contoso.com"), action("revoke_sessions", "b@contoso.com")]}
    assert len(judge(expected, one)) == 1
    assert judge(expected, two) == []


def test_order_holds_trivially_when_a_kind_did_not_run() -> None:
    expected = {"order": [["revert_connector_change", "unblock_connector"]]}
    assert judge(expected, {"actions": [action("unblock_connector", "X")]}) == []


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),  # keys not named are free
        ({"a": None}, {}, True),  # null matches null, an absent key, "" or []
        ({"a": None}, {"a": ""}, True),
        ({"a": None}, {"a": []}, True),
        ({"a": None}, {"a": "smtp:x@example.com"}, False),
        ({"a": None}, {"a": False}, False),
        (["x", "y"], ["y", "x"], True),  # scalar lists: any order, same items
        (["x", "y"], ["x", "y", "z"], False),
        (["x", "x"], ["x", "y"], False),
        ([], [], True),
        ([], ["x"], False),
        ([{"n": 1}, {"n": 1}], [{"n": 1}, {"n": 2}], False),  # distinct items
        ([{"n": 1}], [{"n": 2}, {"n": 1, "m": 3}], True),
        ("Billing@Contoso.COM", "billing@contoso.com", True),  # addresses and domains ignore case
        ("Contoso.com", "contoso.com", True),
        ("Contoso Hybrid", "contoso hybrid", False),  # other strings do not
        (True, 1, False),
        (1, 1.0, True),
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00+00:00", True),
    ],
)
def test_partial_match_rules(expected: Any, actual: Any, ok: bool) -> None:
    assert (partial_match(copy.deepcopy(expected), actual, "x") == []) is ok


def test_case_status_extension_is_judged_when_given() -> None:
    assert judge({"case_status": "needs_manual"}, {"case_status": "needs_manual"}) == []
    assert judge({"case_status": "needs_manual"}, {"case_status": "completed"}) == [
        "case_status: expected needs_manual, got completed"
    ]
    assert judge({}, {"case_status": "completed"}) == []


def test_actions_exclude_one_target() -> None:
    expected = {"actions_exclude": [{"kind": "disable_connector", "target": "Outbound to Fabrikam"}, "remove_connector"]}
    other = {"actions": [action("disable_connector", "Rogue Relay"), action("remove_connector", status="skipped")]}
    assert judge(expected, other) == []
    hit = {"actions": [action("disable_connector", "outbound to fabrikam")]}
    assert judge(expected, hit) == [
        "actions_exclude: disable_connector on Outbound to Fabrikam was executed (outbound to fabrikam)"]
    planned_only = {"actions": [action("disable_connector", "Outbound to Fabrikam", status="rejected")]}
    assert judge(expected, planned_only) == []


def test_approvals_by_kind_or_by_kind_and_target() -> None:
    approvals = Approvals.model_validate({"default": "ignore", "by_action": {
        "remove_mail_forwarding": "approve", "remove_mail_forwarding:CEO@contoso.com": "reject",
        "disable_transport_rule:Copy finance mail": "approve"}})
    assert approvals.answer("remove_mail_forwarding", "ceo@contoso.com") == "reject"  # the more specific key wins
    assert approvals.answer("remove_mail_forwarding", "cfo@contoso.com") == "approve"
    assert approvals.answer("disable_transport_rule", "Copy finance mail") == "approve"
    assert approvals.answer("disable_transport_rule", "Disclaimer") == "ignore"  # the default


def call(api: str, at: str, status: int = 200, **detail: Any) -> dict[str, Any]:
    return {"api": api, "status": status, "at": f"2026-11-20T{at}Z", "method": "", "path": "", "query": "", **detail}


HUNT = "graph:POST /security/runHuntingQuery"
VERDICT = datetime(2026, 11, 20, 10, 0, 5, tzinfo=timezone.utc)


def test_tenant_calls_before_the_verdict_count_queries_once_and_find_reads_made_twice() -> None:
    calls = [
        call("exo:Get-InboundConnector", "10:00:00"),
        call(HUNT, "10:00:01", 500, body_sha256="mail"), call(HUNT, "10:00:02", body_sha256="mail"),  # a retry
        call(HUNT, "10:00:02", body_sha256="admins"),
        call("graph:GET /users/a@contoso.com", "10:00:03", query="$select=id"),
        call("graph:GET /users/a@contoso.com", "10:00:03", 404, query="$select=id"),  # a failure read nothing
        call("exo:Search-UnifiedAuditLog", "10:00:04", parameters={"SessionId": "s"}, result_index=[1, 1000]),
        call("exo:Search-UnifiedAuditLog", "10:00:04", parameters={"SessionId": "s"}, result_index=[1001, 1500]),
        call("exo:Get-InboundConnector", "10:00:06"),  # an action's read, after the verdict
    ]
    assert tenant_calls(calls, VERDICT) == {"total": 8, "hunting": 2, "duplicate_reads": []}
    twice = calls + [call("graph:GET /users/a@contoso.com", "10:00:04", query="$select=id"),
                     call(HUNT, "10:00:04", body_sha256="admins")]
    assert tenant_calls(twice, VERDICT)["duplicate_reads"] == [
        "graph:GET /users/a@contoso.com $select=id", HUNT]
    assert tenant_calls(calls, None)["duplicate_reads"] == ["exo:Get-InboundConnector"]


def test_a_case_over_the_tenant_call_budget_fails_whatever_expected_says() -> None:
    hunting = [call(HUNT, "10:00:01", body_sha256=str(n)) for n in range(4)]
    result = {"tenant_calls": tenant_calls(hunting + [call("exo:Get-AcceptedDomain", "10:00:02")] * 2, VERDICT)}
    assert judge({}, result) == [
        "tenant_calls: 4 hunting queries before the verdict, more than 3",
        "tenant_calls: read twice before the verdict: exo:Get-AcceptedDomain",
    ]
    assert judge({}, {"tenant_calls": tenant_calls(hunting[:3], VERDICT)}) == []
