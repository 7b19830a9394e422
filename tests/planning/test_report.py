"""The Markdown case report: every section an analyst and an auditor need."""

from __future__ import annotations

from datetime import UTC, datetime

from workflows.report import report_markdown
from workflows.types import ActionRecord, CaseReport, ConnectorConfig, Finding, PlannedAction, Subject

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PARAMS = {
    "revert_connector_change": {"identity": "9b0e", "direction": "inbound",
                                "restore": {"SenderIPAddresses": ["203.0.113.5"]}},
    "reset_admin_password": {"user": "helpdesk.op@contoso.com"},
    "unblock_connector": {"connector_id": "9b0e"},
    "remove_connector": {"identity": "9b0e", "direction": "inbound"},
    "disable_connector": {"identity": "9b0e", "direction": "inbound"},
}


def action(id_: str, kind: str, target: str = "", **fields) -> PlannedAction:
    return PlannedAction(id=id_, kind=kind, target=target, stage=fields.pop("stage", "contain"),
                         reason=fields.pop("reason", f"because {kind}"), policy=fields.pop("policy", "approve"),
                         params=PARAMS[kind], **fields)


def report(**fields) -> CaseReport:
    base = dict(
        case_id="connector-case/t1/contoso-hybrid",
        tenant_id="t1",
        alerts=["da637"],
        case_status="completed",
        mode="enforce",
        connector="Contoso Hybrid",
        connector_config=ConnectorConfig(guid="9b0e", name="Contoso Hybrid", direction="inbound", enabled=True),
        verdict="true_positive",
        findings=[Finding(id="change_by_unexpected_actor", summary="helpdesk.op changed the connector",
                          evidence={"actor": "helpdesk.op@contoso.com", "changes": [{"SenderIPAddresses": "198.51.100.23"}]})],
        reasons=["control and abuse indicators together"],
        plan_hash="abc123def456",
        actions=[
            ActionRecord(action=action("a1", "revert_connector_change", "Contoso Hybrid"), status="done",
                         approved_by=["soc1@contoso.com"], decided_at=T0, started_at=T0, finished_at=T0,
                         verified=True, detail="reverted Contoso Hybrid: SenderIPAddresses to 203.0.113.5"),
            ActionRecord(action=action("a2", "reset_admin_password", "helpdesk.op@contoso.com", stage="eradicate"),
                         status="failed", approved_by=["soc1@contoso.com"], decided_at=T0, started_at=T0,
                         finished_at=T0, verified=False, detail="lastPasswordChangeDateTime did not move"),
            ActionRecord(action=action("a3", "unblock_connector", "Contoso Hybrid", stage="recover",
                                       requires=["a1", "a2"]),
                         status="skipped", detail="requires a2"),
            ActionRecord(action=action("a4", "remove_connector", "Contoso | Hybrid", policy="two_person"),
                         status="rejected", rejected_by="soc2@contoso.com", decided_at=T0,
                         decision_reason="keep it for forensics"),
        ],
        notes={"source_ips": ["198.51.100.23"], "unavailable_sources": []},
        started_at=T0,
        finished_at=T0,
    )
    base.update(fields)
    return CaseReport(**base)


def test_report_shows_verdict_findings_evidence_and_every_action():
    text = report_markdown(report())

    assert text.startswith("# quell case connector-case/t1/contoso-hybrid")
    assert "**true_positive**" in text and "control and abuse indicators together" in text
    assert "### change_by_unexpected_actor" in text and "helpdesk.op@contoso.com" in text
    assert '`[{"SenderIPAddresses": "198.51.100.23"}]`' in text
    assert "abc123def456" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| a")]
    assert [row.split("|")[1].strip() for row in table_rows] == ["a1", "a2", "a3", "a4"]
    assert "| done | soc1@contoso.com | yes | 2026-11-20 10:00:00 UTC | 2026-11-20 10:00:00 UTC |" in table_rows[0]
    assert "a1, a2" in table_rows[2]
    assert "Contoso \\| Hybrid" in table_rows[3], "a pipe in a target must not break the table"
    assert "rejected by soc2@contoso.com at 2026-11-20 10:00:00 UTC: keep it for forensics" in text
    assert "- source_ips: `[\"198.51.100.23\"]`" in text and "unavailable_sources" not in text


def test_needs_manual_report_says_what_was_and_was_not_done():
    text = report_markdown(report(case_status="needs_manual"))

    assert "**Needs manual work:**" in text
    done, not_done = text.split("Not done:")
    assert "- a1 revert_connector_change Contoso Hybrid" in done.split("Done:")[1]
    assert "- a2 reset_admin_password helpdesk.op@contoso.com: failed (lastPasswordChangeDateTime did not move)" in not_done
    assert "- a3 unblock_connector Contoso Hybrid: skipped (requires a2)" in not_done
    assert "- a4 remove_connector Contoso | Hybrid: rejected" in not_done


def test_completed_and_dry_run_reports_carry_no_manual_work_banner():
    completed = report_markdown(report())
    dry = report_markdown(report(mode="dry_run", actions=[
        ActionRecord(action=action("a1", "disable_connector", "Contoso Hybrid"), status="dry_run",
                     verified=False, detail="dry run: would disable Contoso Hybrid (enabled now)")]))

    assert "Needs manual work" not in completed
    assert "dry run: nothing in the tenant or the alert was changed" in dry
    assert "- a1 disable_connector Contoso Hybrid: dry run only (dry run: would disable" in dry


def test_unresolved_case_without_plan_renders():
    text = report_markdown(report(connector=None, connector_config=None, verdict="needs_review", findings=[],
                                  reasons=[], plan_hash=None, actions=[], notes={}, finished_at=None))

    assert "| Connector | unresolved |" in text and "No actions were planned." in text
    assert "| Finished | - |" in text and "What was and was not done" not in text


def test_each_footprint_has_its_section_with_the_evidence_and_what_was_done():
    findings = [
        Finding(id="other_connector_suspicious", summary="Backup Relay was created by helpdesk.op",
                evidence={"connector": "Backup Relay"},
                subjects=[Subject(kind="connector", id="1111", name="Backup Relay"),
                          Subject(kind="account", name="helpdesk.op@contoso.com")]),
        Finding(id="connector_deleted", summary="helpdesk.op deleted Legacy Relay",
                evidence={"connector": "Legacy Relay", "last_known": {"SenderIPAddresses": ["203.0.113.7"]}},
                subjects=[Subject(kind="connector", name="Legacy Relay")]),
        Finding(id="admin_mail_forwarding", summary="helpdesk.op set forwarding on ceo@contoso.com",
                evidence={"mailbox": "ceo@contoso.com", "forwarding": {"ForwardingSmtpAddress": "smtp:x@evil.example"}},
                subjects=[Subject(kind="account", name="helpdesk.op@contoso.com"),
                          Subject(kind="mailbox", name="ceo@contoso.com")]),
    ]
    actions = [
        ActionRecord(action=action("a5", "disable_connector", "Backup Relay"), status="done", verified=True,
                     detail="disabled Backup Relay"),
        ActionRecord(action=PlannedAction(id="a6", kind="remove_mail_forwarding", target="ceo@contoso.com",
                                          stage="eradicate", reason="r", policy="approve",
                                          params={"mailbox": "ceo@contoso.com"}),
                     status="rejected", rejected_by="soc2@contoso.com"),
    ]
    text = report_markdown(report(findings=findings, actions=actions))

    other = text.split("## Other connectors")[1].split("## ")[0]
    deleted = text.split("## Deleted connectors")[1].split("## ")[0]
    admin = text.split("## What the admin also did")[1].split("## ")[0]
    assert "Backup Relay was created" in other and "a5 disable_connector Backup Relay: done (disabled Backup Relay)" in other
    assert '`{"SenderIPAddresses": ["203.0.113.7"]}`' in deleted and "nothing was done about it" in deleted
    assert "smtp:x@evil.example" in admin and "a6 remove_mail_forwarding ceo@contoso.com: rejected" in admin


def test_a_case_without_footprints_has_no_such_sections():
    text = report_markdown(report())
    assert "## Other connectors" not in text and "## What the admin also did" not in text
