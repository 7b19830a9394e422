"""Grading rules at every boundary docs/scenarios.md states, and the verdict order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflows.grading import connector_unresolved_verdict, grade
from workflows.types import (
    AdminSignIns,
    ApprovedChange,
    ConnectorChange,
    ConnectorConfig,
    ConnectorResolution,
    Evidence,
    FailureBurst,
    MailStats,
    Organization,
    Subject,
    Thresholds,
)

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW_HOUR = NOW.replace(minute=0)
T = Thresholds()
ORG = Organization(
    on_premises_ip_ranges=["203.0.113.0/28"],
    connector_admins=["exadmin@contoso.com"],
    expected_high_volume_connectors=["Contoso Bulk Relay"],
    partner_domains=["fabrikam.com"],
    approved_changes=[
        ApprovedChange(ticket="CHG-1042", connector="Contoso Hybrid", by="exadmin@contoso.com",
                       **{"from": datetime(2026, 11, 18, 18, tzinfo=UTC)}, to=datetime(2026, 11, 18, 22, tzinfo=UTC)),
    ],
)


def connector(name: str = "Contoso Hybrid", direction: str = "inbound", kind: str = "OnPremises",
              ips: list[str] | None = None) -> ConnectorConfig:
    return ConnectorConfig(guid="9b0e4c50-0000-4000-8000-000000000010", name=name, direction=direction,
                           enabled=True, connector_type=kind,
                           properties={"SenderIPAddresses": ips if ips is not None else ["203.0.113.5"]})


def change(at: datetime, actor: str = "helpdesk.op@contoso.com", operation: str = "Set-InboundConnector",
           **parameters: Any) -> ConnectorChange:
    return ConnectorChange(at=at, operation=operation, actor=actor,
                           parameters={"Identity": "Contoso Hybrid", **parameters})


def evidence(**overrides: Any) -> Evidence:
    return Evidence(**{"connector": connector(), "collected_at": NOW, **overrides})


def flat_hours(per_hour: int, hours: int = 168) -> dict[str, int]:
    return {(NOW_HOUR - timedelta(hours=k)).isoformat(): per_hour for k in range(hours)}


def ids(e: Evidence, org: Organization = ORG, thresholds: Thresholds = T) -> set[str]:
    return {f.id for f in grade(e, org, thresholds, NOW).findings}


def kind(e: Evidence, org: Organization = ORG) -> str:
    return grade(e, org, T, NOW).kind


# --------------------------------------------------------------------------- mail indicators


@pytest.mark.parametrize(
    ("field", "finding"),
    [
        ("p1_p2_mismatch", "p1_p2_mismatch"),
        ("empty_sender_object_id", "empty_sender_object_id"),
        ("unprovisioned_sender_domain", "unprovisioned_sender_domain"),
        ("spoofed_to_partners", "supply_chain_targeting"),
        ("spoofed_to_internal", "internal_recipients"),
    ],
)
@pytest.mark.parametrize(("count", "raised"), [(9, False), (10, True)])
def test_message_indicators_need_ten_messages(field: str, finding: str, count: int, raised: bool) -> None:
    mail = MailStats(messages=500, **{field: count})
    assert (finding in ids(evidence(mail=mail))) is raised


@pytest.mark.parametrize(("peak", "raised"), [(99, False), (100, True)])
def test_volume_spike_needs_the_mail_threshold(peak: int, raised: bool) -> None:
    hours = {(NOW_HOUR - timedelta(hours=3)).isoformat(): peak}  # every other hour 0: median 0
    assert ("volume_spike" in ids(evidence(mail=MailStats(hourly_counts=hours)))) is raised


@pytest.mark.parametrize(("baseline", "raised"), [(20, True), (21, False)])
def test_volume_spike_needs_five_times_the_median(baseline: int, raised: bool) -> None:
    hours = flat_hours(baseline)
    hours[(NOW_HOUR - timedelta(hours=1)).isoformat()] = 100  # 5 × 20 = 100; 5 × 21 = 105
    assert ("volume_spike" in ids(evidence(mail=MailStats(hourly_counts=hours)))) is raised


def test_volume_baseline_counts_hours_without_mail_as_zero() -> None:
    # 80 of 168 hours at 30 an hour: the zero-filled median is 0, so one 100-message hour spikes.
    hours = flat_hours(30, hours=80)
    hours[(NOW_HOUR - timedelta(hours=100)).isoformat()] = 100
    found = grade(evidence(mail=MailStats(hourly_counts=hours)), ORG, T, NOW).findings
    spike = next(f for f in found if f.id == "volume_spike")
    assert spike.evidence["baseline_median"] == 0


def test_volume_spike_ignores_hours_before_the_lookback() -> None:
    hours = {(NOW_HOUR - timedelta(days=8)).isoformat(): 1000}
    assert "volume_spike" not in ids(evidence(mail=MailStats(hourly_counts=hours)))


@pytest.mark.parametrize(
    ("junk", "messages", "raised"),
    [(50, 250, True), (50, 251, False), (49, 100, False), (60, 300, True)],
)
def test_junk_spike_needs_fifty_messages_and_twenty_percent(junk: int, messages: int, raised: bool) -> None:
    mail = MailStats(messages=messages, junk_or_quarantined=junk)
    assert ("junk_delivery_spike" in ids(evidence(mail=mail))) is raised


@pytest.mark.parametrize(("domains", "raised"), [(49, False), (50, True)])
def test_external_spray_needs_fifty_domains(domains: int, raised: bool) -> None:
    assert ("external_spray" in ids(evidence(mail=MailStats(external_recipient_domains=domains)))) is raised


def test_domain_findings_are_skipped_without_accepted_domains() -> None:
    mail = MailStats(messages=100, unprovisioned_sender_domain=100, external_recipient_domains=100, spoofed_to_internal=100)
    found = ids(evidence(mail=mail, unavailable=["accepted_domains"]))
    assert not found & {"unprovisioned_sender_domain", "external_spray", "internal_recipients"}
    assert "evidence_unavailable" in found


@pytest.mark.parametrize(("url", "attachment"), [(1, 0), (0, 1), (0, 0)])
def test_one_malicious_message_is_enough(url: int, attachment: int) -> None:
    found = ids(evidence(mail=MailStats(malicious_url_messages=url, malicious_attachment_messages=attachment)))
    assert ("malicious_url" in found) is bool(url)
    assert ("malicious_attachment" in found) is bool(attachment)


# --------------------------------------------------------------------------- sender IPs


@pytest.mark.parametrize(
    ("conn", "sender_ips", "raised"),
    [
        (connector(ips=["203.0.113.5"]), ["203.0.113.5"], False),
        (connector(ips=["203.0.113.0/29"]), [], False),  # a subnet of the on-premises range
        (connector(ips=["203.0.113.0/27"]), [], True),  # wider than the on-premises range
        (connector(ips=["198.51.100.23"]), [], True),  # the configuration alone
        (connector(ips=["203.0.113.5"]), ["198.51.100.23"], True),  # the mail alone
        (connector(ips=["relay.contoso.com"]), [], False),  # host names are not compared
        (connector(ips=["203.0.113.1-203.0.113.9"]), [], False),
        (connector(kind="Partner", ips=["198.51.100.23"]), ["198.51.100.23"], False),
        (connector(direction="outbound", ips=["198.51.100.23"]), ["198.51.100.23"], False),
    ],
)
def test_sender_ip_not_on_premises(conn: ConnectorConfig, sender_ips: list[str], raised: bool) -> None:
    e = evidence(connector=conn, mail=MailStats(sender_ips=sender_ips))
    assert ("sender_ip_not_on_premises" in ids(e)) is raised


# --------------------------------------------------------------------------- changes


def test_a_change_of_enabled_or_comment_alone_is_not_a_modification() -> None:
    changes = [change(NOW - timedelta(hours=1), Enabled=True, Comment="re-enabled")]
    found = ids(evidence(changes=changes))
    assert not found & {"connector_modified", "change_by_unexpected_actor", "change_approved"}


@pytest.mark.parametrize(
    "parameter",
    ["Name", "SenderDomains", "RecipientDomains", "SenderIPAddresses", "SmartHosts", "TlsSenderCertificateName",
     "TlsDomain", "ConnectorType", "RestrictDomainsToIPAddresses"],
)
def test_each_routing_property_is_a_modification(parameter: str) -> None:
    found = ids(evidence(changes=[change(NOW - timedelta(hours=1), Enabled=True, **{parameter: "x"})]))
    assert "connector_modified" in found


def test_new_connector_record_is_a_creation() -> None:
    changes = [change(NOW - timedelta(hours=2), operation="New-InboundConnector", Name="Contoso Hybrid")]
    found = ids(evidence(changes=changes))
    assert "connector_created" in found and "connector_modified" not in found


def test_changes_before_the_lookback_do_not_count() -> None:
    found = ids(evidence(changes=[change(NOW - timedelta(days=7, seconds=1), SenderIPAddresses=["198.51.100.23"])]))
    assert not found & {"connector_modified", "change_by_unexpected_actor"}


@pytest.mark.parametrize(
    ("at", "approved"),
    [
        (datetime(2026, 11, 18, 18, tzinfo=UTC), True),  # the window's first instant
        (datetime(2026, 11, 18, 22, tzinfo=UTC), True),  # the window's last instant
        (datetime(2026, 11, 18, 17, 59, 59, tzinfo=UTC), False),
        (datetime(2026, 11, 18, 22, 0, 1, tzinfo=UTC), False),
    ],
)
def test_approved_change_window_edges(at: datetime, approved: bool) -> None:
    found = ids(evidence(changes=[change(at, actor="exadmin@contoso.com", SenderIPAddresses=["203.0.113.5"])]))
    assert ("change_approved" in found) is approved


def test_approval_needs_the_same_actor() -> None:
    at = datetime(2026, 11, 18, 19, tzinfo=UTC)
    found = ids(evidence(changes=[change(at, actor="helpdesk.op@contoso.com", SenderIPAddresses=["1.2.3.4"])]))
    assert "change_approved" not in found and "change_by_unexpected_actor" in found


def test_approval_needs_the_same_connector() -> None:
    at = datetime(2026, 11, 18, 19, tzinfo=UTC)
    e = evidence(connector=connector(name="Other Relay"), changes=[
        ConnectorChange(at=at, operation="Set-InboundConnector", actor="exadmin@contoso.com",
                        parameters={"Identity": "Other Relay", "SenderIPAddresses": ["203.0.113.6"]})])
    assert "change_approved" not in ids(e)


def test_unapproved_change_by_a_listed_admin_raises_neither_actor_finding() -> None:
    found = ids(evidence(changes=[change(NOW - timedelta(hours=1), actor="EXADMIN@contoso.com",
                                         SenderIPAddresses=["203.0.113.6"])]))
    assert "connector_modified" in found
    assert not found & {"change_approved", "change_by_unexpected_actor"}


# --------------------------------------------------------------------------- acting admins


def admin(upn: str = "helpdesk.op@contoso.com", **fields: Any) -> AdminSignIns:
    return AdminSignIns(upn=upn, **fields)


def burst(failures: int, success_after: timedelta | None) -> FailureBurst:
    latest = NOW - timedelta(hours=2)
    return FailureBurst(failures=failures, earliest_failure=latest - timedelta(seconds=50), latest_failure=latest,
                        first_success=latest + success_after if success_after is not None else None)


ACTING = [change(NOW - timedelta(hours=1), SenderIPAddresses=["198.51.100.23"])]


@pytest.mark.parametrize(
    ("failures", "after", "raised"),
    [
        (101, timedelta(seconds=10), True),
        (100, timedelta(seconds=10), False),
        (101, timedelta(seconds=11), False),
        (101, timedelta(seconds=0), True),
        (500, None, False),
    ],
)
def test_bruteforce_boundaries(failures: int, after: timedelta | None, raised: bool) -> None:
    e = evidence(changes=ACTING, admins=[admin(failure_bursts=[burst(failures, after)])])
    assert ("admin_bruteforce_success" in ids(e)) is raised


@pytest.mark.parametrize(
    ("countries", "raised"),
    [
        ({"US": 5, "NL": 1}, True),  # 1 of 6 is under 20 %
        ({"US": 4, "NL": 1}, False),  # 1 of 5 is exactly 20 %
        ({"US": 3, "NL": 1}, False),  # fewer than 5 sign-ins
        ({"US": 9, "NL": 1}, True),
    ],
)
def test_unusual_location_boundaries(countries: dict[str, int], raised: bool) -> None:
    a = admin(countries=countries, successful_signins=sum(countries.values()))
    assert ("admin_unusual_location" in ids(evidence(changes=ACTING, admins=[a]))) is raised


def test_findings_name_their_accounts_and_connector_in_typed_subjects() -> None:
    helpdesk_id = "2a7d5b20-0000-4000-8000-000000000002"
    a = admin(object_id=helpdesk_id, countries={"US": 9, "NL": 1}, successful_signins=10,
              failure_bursts=[burst(500, timedelta(seconds=1))])
    verdict = grade(evidence(changes=ACTING, admins=[a], mail=SPOOFED), ORG, T, NOW)
    about = {f.id: f.subjects for f in verdict.findings}

    account = Subject(kind="account", id=helpdesk_id, name="helpdesk.op@contoso.com")
    hybrid = Subject(kind="connector", id=connector().guid, name="Contoso Hybrid")
    assert about["admin_bruteforce_success"] == about["admin_unusual_location"] == [account]
    assert about["change_by_unexpected_actor"] == [hybrid, account]
    assert about["p1_p2_mismatch"] == about["connector_modified"] == [hybrid]
    assert verdict.history.acting_admins == ["helpdesk.op@contoso.com"]
    assert [(r.change, r.ticket, r.unexpected_actor) for r in verdict.history.changes] == [(ACTING[0], None, True)]


def test_admin_findings_concern_acting_admins_only() -> None:
    bystander = admin("someone@contoso.com", countries={"US": 9, "NL": 1}, successful_signins=10,
                      failure_bursts=[burst(500, timedelta(seconds=1))])
    found = ids(evidence(changes=ACTING, admins=[bystander]))
    assert not found & {"admin_unusual_location", "admin_bruteforce_success"}


# --------------------------------------------------------------------------- verdicts

SPOOFED = MailStats(messages=400, p1_p2_mismatch=400, empty_sender_object_id=400)


def test_true_positive_needs_control_and_abuse() -> None:
    verdict = grade(evidence(changes=ACTING, mail=SPOOFED), ORG, T, NOW)
    assert verdict.kind == "true_positive"
    assert "change_by_unexpected_actor" in verdict.reasons[0] and "p1_p2_mismatch" in verdict.reasons[0]


def test_control_without_abuse_is_needs_review() -> None:
    assert kind(evidence(changes=ACTING)) == "needs_review"


def test_abuse_without_control_or_explanation_is_needs_review() -> None:
    assert kind(evidence(mail=SPOOFED)) == "needs_review"


def test_unavailable_evidence_wins_over_true_positive() -> None:
    verdict = grade(evidence(changes=ACTING, mail=SPOOFED, unavailable=["admin_sign_ins"]), ORG, T, NOW)
    assert verdict.kind == "needs_review" and verdict.has("evidence_unavailable")
    assert verdict.has("change_by_unexpected_actor")  # findings are still reported


def test_approved_changes_explain_the_indicators() -> None:
    approved = [change(datetime(2026, 11, 18, 19, tzinfo=UTC), actor="exadmin@contoso.com",
                       SenderIPAddresses=["203.0.113.5"])]
    verdict = grade(evidence(changes=approved, mail=SPOOFED), ORG, T, NOW)
    assert verdict.kind == "benign_positive"


def test_one_unapproved_change_leaves_it_unexplained() -> None:
    changes = [
        change(datetime(2026, 11, 18, 19, tzinfo=UTC), actor="exadmin@contoso.com", SenderIPAddresses=["203.0.113.5"]),
        change(NOW - timedelta(hours=1), actor="exadmin@contoso.com", SenderIPAddresses=["203.0.113.6"]),
    ]
    assert kind(evidence(changes=changes, mail=SPOOFED)) == "needs_review"


def test_expected_high_volume_connector_is_benign() -> None:
    e = evidence(connector=connector(name="Contoso Bulk Relay"), mail=MailStats(hourly_counts=flat_hours(500, 1)))
    assert kind(e) == "benign_positive"


def test_benign_explanation_does_not_cover_an_admin_finding() -> None:
    approved = [change(datetime(2026, 11, 18, 19, tzinfo=UTC), actor="exadmin@contoso.com",
                       SenderIPAddresses=["203.0.113.5"])]
    odd = admin("exadmin@contoso.com", countries={"US": 9, "NL": 1}, successful_signins=10)
    assert kind(evidence(changes=approved, mail=SPOOFED, admins=[odd])) == "needs_review"


def test_nothing_reproduces_is_false_positive_even_when_blocked() -> None:
    verdict = grade(evidence(blocked_connector=True, mail=MailStats(messages=1000, hourly_counts=flat_hours(6))),
                    ORG, T, NOW)
    assert verdict.kind == "false_positive"
    assert [f.id for f in verdict.findings] == ["connector_blocked"]


def test_unresolved_connector_is_needs_review() -> None:
    verdict = connector_unresolved_verdict(ConnectorResolution(candidates=["A", "B"], method="email_events_sender_ip",
                                                               reason="two connectors"))
    assert verdict.kind == "needs_review" and [f.id for f in verdict.findings] == ["connector_unresolved"]
    failed = connector_unresolved_verdict(ConnectorResolution(method="unavailable", reason="EXO 503"))
    assert {f.id for f in failed.findings} == {"evidence_unavailable", "connector_unresolved"}


def test_the_example_scenario_shape_is_a_true_positive() -> None:
    """The tp-hijacked-hybrid-connector evidence, as the activities summarise it."""
    hours = flat_hours(6)
    hours[(NOW_HOUR - timedelta(hours=1)).isoformat()] = 400
    e = evidence(
        connector=connector(ips=["198.51.100.23"]),
        changes=[
            change(datetime(2026, 11, 18, 19, 12, tzinfo=UTC), actor="exadmin@contoso.com", SenderIPAddresses=["203.0.113.5"]),
            change(datetime(2026, 11, 20, 8, 55, tzinfo=UTC), SenderIPAddresses=["198.51.100.23"]),
        ],
        mail=MailStats(messages=1395, p1_p2_mismatch=400, empty_sender_object_id=400, junk_or_quarantined=200,
                       hourly_counts=hours, external_recipient_domains=400,
                       sender_ips=["203.0.113.5", "198.51.100.23"]),
        accepted_domains=["contoso.com", "contoso.onmicrosoft.com"],
        blocked_connector=True,
        blocked_senders=["billing@contoso.com"],
        admins=[admin(countries={"US": 6, "NL": 1}, successful_signins=7)],
    )
    verdict = grade(e, ORG, T, NOW)
    found = {f.id for f in verdict.findings}
    assert verdict.kind == "true_positive"
    assert {"connector_modified", "change_by_unexpected_actor", "sender_ip_not_on_premises", "admin_unusual_location",
            "p1_p2_mismatch", "empty_sender_object_id", "volume_spike", "external_spray", "connector_blocked",
            "change_approved"} <= found
    assert not found & {"connector_created", "admin_bruteforce_success", "supply_chain_targeting", "junk_delivery_spike"}
