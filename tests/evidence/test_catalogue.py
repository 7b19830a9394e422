"""Every catalogue query runs on duckdb-kql (the emulator's engine) over the example scenarios,
and the answers summarise to what the scenario's author wrote."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.evidence import compromised_sender_accounts, summarise_mail
from activities.hunting import default_catalogue, render
from emulator.hunting import HuntingEngine
from emulator.scenario import load_scenario
from workflows.audit import AUDIT_OPERATIONS, CONNECTOR_OPERATIONS
from workflows.timestamps import parse_iso
from tests.conftest import PROJECT_SCENARIOS

TP = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
FP = PROJECT_SCENARIOS / "fp-scanner-relay-normal-traffic.yaml"
SMARTHOST = PROJECT_SCENARIOS / "tp-outbound-smarthost-hijack.yaml"
BRUTEFORCE = PROJECT_SCENARIOS / "nr-noisy-tenant-admin-below-thresholds.yaml"
HELPDESK = "2a7d5b20-0000-4000-8000-000000000002"


def engine_at(path: Path) -> tuple[HuntingEngine, datetime]:
    authored = parse_iso(yaml.safe_load(path.read_text())["now"])
    return HuntingEngine(load_scenario(path, real_now=authored).tables), authored


@pytest.fixture(scope="module")
def tp() -> tuple[HuntingEngine, datetime]:
    return engine_at(TP)


def params(query_id: str, now: datetime, connector: str = "Contoso Hybrid") -> dict[str, Any]:
    since = now - timedelta(days=7)
    return {
        "connector-mail": dict(
            connectorName=connector, since=since, until=now, lookbackStart=since,
            acceptedDomains=["contoso.com", "contoso.onmicrosoft.com"], partnerDomains=["fabrikam.com"],
            baselineStart=now - timedelta(days=30), baselineEnd=now - timedelta(days=1),
            recentStart=now - timedelta(days=1), minPriorMessages=3, compromisedPerHour=100),
        "compromised-sender-accounts": dict(since=since, until=now, countThreshold=100),
        "admin-sign-ins": dict(accountObjectIds=[HELPDESK], accountUpns=["helpdesk.op@contoso.com"], since=since,
                               until=now, failureThreshold=100, successWithinSeconds=10),
        "audit-records-cloudapp": dict(operations=AUDIT_OPERATIONS, since=now - timedelta(days=30), until=now,
                                       signInsFor=CONNECTOR_OPERATIONS, signInsSince=since, failureThreshold=100,
                                       successWithinSeconds=10),
        "connector-from-telemetry": dict(ipAddresses=["198.51.100.23"], networkMessageIds=["spam-0"],
                                         since=since, until=now),
    }[query_id]


def run(engine: HuntingEngine, now: datetime, query_id: str, **overrides: Any) -> list[dict[str, Any]]:
    query = default_catalogue()[query_id].query
    return engine.run(render(query, {**params(query_id, now), **overrides}), now)["results"]


@pytest.mark.parametrize("query_id", sorted(default_catalogue()))
def test_every_catalogue_query_runs_on_duckdb_kql(tp: tuple[HuntingEngine, datetime], query_id: str) -> None:
    engine, now = tp
    run(engine, now, query_id)  # HuntingQueryError (a KQL error) fails the test


def test_catalogue_entries_are_distinct_and_declare_their_inputs() -> None:
    catalogue = default_catalogue()
    assert len({q.id for q in catalogue.values()}) == len(catalogue) >= 5
    for entry in catalogue.values():
        assert entry.parameters, entry.key
        assert "{" not in entry.query.replace("{i}", ""), f"{entry.key}: no string formatting in queries"


def test_tp_mail_summary_matches_the_scenario(tp: tuple[HuntingEngine, datetime]) -> None:
    engine, now = tp
    mail = summarise_mail(run(engine, now, "connector-mail"))
    assert (mail.messages, mail.p1_p2_mismatch, mail.empty_sender_object_id) == (1395, 400, 400)
    assert (mail.junk_or_quarantined, mail.external_recipient_domains, mail.spoofed_to_partners) == (200, 400, 0)
    assert mail.hourly_counts[(now - timedelta(hours=1)).isoformat()] == 400
    assert set(mail.sender_ips) == {"203.0.113.5", "198.51.100.23"}
    assert mail.spoofed_header_senders == ["billing@contoso.com"]
    assert mail.sample_message_ids[0].startswith("spam-")
    assert (mail.first_contact_senders, mail.first_contact_recipient_domains) == (1, 400)


def test_connector_match_is_by_name_within_the_list_case_insensitively(tp: tuple[HuntingEngine, datetime]) -> None:
    engine, now = tp
    total = next(r for r in run(engine, now, "connector-mail", connectorName="CONTOSO HYBRID")
                 if r["Section"] == "total")
    assert total["Messages"] == 1395
    none = [r for r in run(engine, now, "connector-mail", connectorName="Contoso") if r["Section"] == "total"]
    assert not none or not none[0]["Messages"]


def test_fp_mail_is_clean() -> None:
    engine, now = engine_at(FP)
    mail = summarise_mail(run(engine, now, "connector-mail", connectorName="Contoso Scanner Relay"))
    assert mail.messages > 900
    assert (mail.p1_p2_mismatch, mail.empty_sender_object_id, mail.unprovisioned_sender_domain) == (0, 0, 0)
    assert (mail.spoofed_to_internal, mail.external_recipient_domains) == (0, 0)


def test_resolution_query_ties_the_alert_ip_to_the_connector(tp: tuple[HuntingEngine, datetime]) -> None:
    engine, now = tp
    assert run(engine, now, "connector-from-telemetry") == [{"Connectors": "Contoso Hybrid", "ByIp": 400, "ByMessage": 1}]
    assert run(engine, now, "connector-from-telemetry", ipAddresses=[], networkMessageIds=[]) == []


def test_signin_countries_of_the_acting_admin(tp: tuple[HuntingEngine, datetime]) -> None:
    engine, now = tp
    rows = [r for r in run(engine, now, "admin-sign-ins") if r["Section"] == "country"]
    assert {r["CountryCode"]: r["SignIns"] for r in rows} == {"US": 6, "NL": 1}


def logons(start: datetime, failures: int, success_after: float) -> dict[str, list[dict[str, Any]]]:
    base = {"AccountObjectId": HELPDESK, "AccountUpn": "helpdesk.op@contoso.com", "Application": "Office 365",
            "ISP": "Hostline VPS", "CountryCode": "NL"}
    rows = [{**base, "ActionType": "LogonFailed", "Timestamp": (start + timedelta(seconds=i * 0.5)).isoformat()}
            for i in range(failures)]
    last = start + timedelta(seconds=(failures - 1) * 0.5)
    rows.append({**base, "ActionType": "LogonSuccess", "Timestamp": (last + timedelta(seconds=success_after)).isoformat()})
    return {"IdentityLogonEvents": rows}


@pytest.mark.parametrize(
    ("failures", "success_after", "found"),
    [(101, 10, True), (100, 10, False), (101, 11, False)],
)
def test_bruteforce_query_boundaries(failures: int, success_after: float, found: bool) -> None:
    now = parse_iso("2026-11-20T10:00:00Z")
    engine = HuntingEngine(logons(parse_iso("2026-11-20T08:00:00Z"), failures, success_after))
    rows = [r for r in engine.run(render(default_catalogue()["admin-sign-ins"].query, params("admin-sign-ins", now)),
                                  now)["results"] if r["Section"] == "burst"]
    assert bool(rows) is found
    if found:
        assert rows[0]["FailedLogonCount"] == failures


def test_the_mail_query_answers_the_compromised_senders_as_their_own_query_does() -> None:
    engine, now = engine_at(SMARTHOST)
    mail = summarise_mail(run(engine, now, "connector-mail", connectorName="Partner Secure Relay"))
    alone = compromised_sender_accounts(run(engine, now, "compromised-sender-accounts"))
    assert mail.compromised == alone
    assert len(alone.object_ids) == 1


def test_the_audit_fallback_reads_the_actors_sign_ins_as_the_sign_in_query_does() -> None:
    """The two queries hold the same sign-in legs (a catalogue entry cannot include another)."""
    engine, now = engine_at(BRUTEFORCE)
    records = [r for r in run(engine, now, "audit-records-cloudapp") if r["Section"] == "record"]
    actors = [r for r in records if r["ActionType"] in CONNECTOR_OPERATIONS and r["Timestamp"] >= (now - timedelta(days=7)).isoformat()]
    object_ids = sorted({r["AccountObjectId"] for r in actors})
    upns = sorted({str(r["RawEventData"].get("UserId") or "").lower() for r in actors} - {""})
    assert len(object_ids) == 2

    def sign_ins(query_id: str, **overrides: Any) -> list[str]:
        rows = [r for r in run(engine, now, query_id, failureThreshold=10, successWithinSeconds=600, **overrides)
                if r["Section"] != "record"]
        return sorted(str(sorted((k, v) for k, v in r.items() if v is not None)) for r in rows)

    fallback = sign_ins("audit-records-cloudapp")
    assert fallback == sign_ins("admin-sign-ins", accountObjectIds=object_ids, accountUpns=upns)
    assert {"burst", "country"} <= {s for r in fallback for s in ("burst", "country") if f"'{s}'" in r}
    assert sign_ins("audit-records-cloudapp", signInsFor=[]) == []
