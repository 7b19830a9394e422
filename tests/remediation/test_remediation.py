"""Action activities against the emulated tenant: act and verify, idempotent reruns, dry runs
that write nothing, silently ignored writes caught, a password that never leaves the request,
the approval gate every action passes first, and alert write-backs only to connector alerts."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import cases, remediation
from activities.clients import ClientPool
from activities.remediation import ADMIN_ROLE_TEMPLATE_IDS, RemediationActivities
from activities.tenant_cache import TenantCache
from config.settings import ApprovalSettings, TenantSettings
from emulator.scenario import load_scenario
from emulator.server import serving_emulator
from workers.analysts import Analysts
from workers.scenarios import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
from workflows import retries
from workflows.types import ActionInput, AlertWriteBacks, Decision, Plan, PlannedAction
from tests.conftest import PROJECT_SCENARIOS

SCENARIO = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
TENANT = "11111111-2222-3333-4444-555555555555"
GUID = "9b0e4c50-0000-4000-8000-000000000010"
ALERT = "da637f1e2c3b4a5d6e7f80910"
HELPDESK = "2a7d5b20-0000-4000-8000-000000000002"
CASE = "connector-case/test/contoso-hybrid"
ANALYSTS = Analysts.generate(["soc1@contoso.com", "soc2@contoso.com"])
APPROVAL = ApprovalSettings(approvers=ANALYSTS.approvers())
"""The worker's approval settings in these tests: the default policy (alert write-backs auto,
remove_connector two-person, the rest one approver)."""

PARAMS: dict[str, dict[str, Any]] = {
    "disable_connector": {"identity": GUID, "direction": "inbound"},
    "remove_connector": {"identity": GUID, "direction": "inbound"},
    "revert_connector_change": {"identity": GUID, "direction": "inbound",
                                "restore": {"SenderIPAddresses": ["203.0.113.5"]}},
    "reset_admin_password": {"user": HELPDESK},
    "revoke_sessions": {"user": HELPDESK},
    "require_admin_mfa": {"report_only": True},
    "unblock_connector": {"connector_id": GUID},
    "unblock_sender": {"sender_address": "billing@contoso.com"},
    "classify_alert": {"alert_id": ALERT, "status": "resolved", "classification": "truePositive",
                       "determination": "compromisedAccount"},
    "comment_alert": {"alert_id": ALERT, "comment": "quell verdict: true_positive"},
    "disable_transport_rule": {"name": "Copy finance mail"},
    "remove_mail_forwarding": {"mailbox": "ceo@contoso.com", "inbox_rules": ["Sync"]},
    "remove_mailbox_permission": {"mailbox": "ceo@contoso.com",
                                  "grants": [{"user": "helpdesk.op@contoso.com", "access_rights": ["FullAccess"]}]},
    "remove_role_assignment": {"user": "svc-sync@contoso.com", "roles": ["Exchange Administrator"]},
}
FOOTPRINT: dict[str, Any] = {
    "transport_rules": [
        {"Guid": "5d1e0c70-0000-4000-8000-000000000040", "Name": "Copy finance mail", "State": "Enabled",
         "Priority": 0, "BlindCopyTo": ["drop@fabrikam-billing.net"]},
    ],
    "mailboxes": [{
        "UserPrincipalName": "ceo@contoso.com", "ForwardingSmtpAddress": "smtp:ceo.archive@outlook-mail.net",
        "ForwardingAddress": None, "DeliverToMailboxAndForward": True,
        "inbox_rules": [{"Name": "Sync", "ForwardTo": ["ceo.archive@outlook-mail.net"]},
                        {"Name": "Newsletters", "MoveToFolder": "Newsletters"}],
        "permissions": [{"User": "helpdesk.op@contoso.com", "AccessRights": ["FullAccess", "ReadPermission"]},
                        {"User": "exadmin@contoso.com", "AccessRights": ["ReadPermission"]}],
    }],
}
"""What the suspect admin left in the example tenant, for the four version 2 actions."""
SVC_SYNC = {"id": "7d3e9a60-0000-4000-8000-000000000006", "userPrincipalName": "svc-sync@contoso.com",
            "displayName": "Sync Service", "accountEnabled": True,
            "roles": ["Exchange Administrator", "Global Reader"]}


@dataclasses.dataclass
class Tenant:
    emulator: Any
    acts: RemediationActivities

    def snapshot(self) -> dict[str, Any]:
        return self.emulator.state.snapshot()

    def writes(self) -> list[dict[str, Any]]:
        """Logged calls that could change the tenant: any cmdlet but Get-*, any Graph call but GET
        (a JSON batch's requests are logged one by one, so the batch itself is not counted)."""
        return [c for c in self.emulator.state.calls
                if (c["api"].startswith("exo:") and not c["api"].startswith("exo:Get-"))
                or (c["api"].startswith("graph:") and not c["api"].startswith("graph:GET")
                    and c["api"] != "graph:POST /$batch")]

    def connector(self) -> dict[str, Any]:
        return next(c for c in self.snapshot()["tenant"]["inbound_connectors"] if c["Guid"] == GUID)

    def user(self) -> dict[str, Any]:
        return next(u for u in self.snapshot()["tenant"]["users"] if u["id"] == HELPDESK)

    def alert(self) -> dict[str, Any]:
        return self.snapshot()["alerts"][ALERT]


@asynccontextmanager
async def serve(cert_dir: Path, faults: list[dict[str, Any]], tenant_changes: dict[str, Any]) -> AsyncIterator[Tenant]:
    """The example scenario's tenant, emulated, with optional faults and tenant changes."""
    data = yaml.safe_load(SCENARIO.read_text())
    data["faults"] = faults
    data["tenant"].update(FOOTPRINT)
    data["tenant"]["users"].append(SVC_SYNC)
    data["tenant"].update(tenant_changes)
    async with serving_emulator(load_scenario(yaml.safe_dump(data)), cert_dir) as emulator:
        pool = ClientPool([TenantSettings(
            tenant_id=TENANT, client_id=EMULATOR_CLIENT_ID, client_secret=SecretStr(EMULATOR_CLIENT_SECRET),
            authority_host=emulator.base_url, disable_instance_discovery=True,
            graph_base_url=emulator.base_url, exo_base_url=emulator.base_url,
        )])
        try:
            yield Tenant(emulator, RemediationActivities(pool, lambda: APPROVAL, TenantCache(timedelta(minutes=1))))
        finally:
            await pool.aclose()


@pytest.fixture
def tenant_with(cert_dir: Path) -> Callable[..., Any]:
    """A fresh tenant of its own, for tests that inject faults or change the tenant."""

    def start(faults: list[dict[str, Any]] | None = None, **tenant_changes: Any) -> Any:
        return serve(cert_dir, faults or [], tenant_changes)

    return start


@pytest.fixture(scope="module")
async def shared_tenant(cert_dir: Path) -> AsyncIterator[tuple[Tenant, Any]]:
    async with serve(cert_dir, [], {}) as t:
        yield t, copy.deepcopy(t.emulator.state.data)


@pytest.fixture
def tenant(shared_tenant: tuple[Tenant, Any]) -> Tenant:
    """The module's emulator, put back to the scenario's state (an emulator start and stop costs ~1.5 s)."""
    t, pristine = shared_tenant
    t.emulator.state.data = copy.deepcopy(pristine)
    t.emulator.state.calls.clear()
    return t


def approval(plan: Plan, who: str = "soc1@contoso.com", key: Ed25519PrivateKey | None = None,
             approve: bool = True) -> Decision:
    return cases.new_decision(CASE, "a2", plan.hash, who, approve, "" if approve else "no",
                              key or ANALYSTS.keys[who])


def action_input(kind: str, mode: str = "enforce", approvers: tuple[str, ...] | None = None, **params: Any) -> ActionInput:
    """The action `a2` of a one-action plan, approved (signed) as its kind needs by default."""
    action = PlannedAction(id="a2", kind=kind, target="t", stage="contain", reason="test",  # type: ignore[arg-type]
                           policy=APPROVAL.for_action(kind), params={**PARAMS[kind], **params})
    plan = Plan(actions=[action])
    if approvers is None:
        approvers = ("soc1@contoso.com", "soc2@contoso.com")[: 2 if action.policy == "two_person" else 1]
    return ActionInput(tenant_id=TENANT, case_id=CASE, mode=mode, action=action, plan=plan,  # type: ignore[arg-type]
                       decisions=[approval(plan, who) for who in approvers])


def env(scheduled: datetime | None = None, **info: Any) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, scheduled_time=scheduled or datetime.now(UTC), **info)
    return environment


def activity_for(t: Tenant, kind: str) -> Callable[..., Any]:
    return getattr(t.acts, kind)


# --------------------------------------------------------------------------- act, verify, rerun


async def test_disable_connector_acts_verifies_and_then_reports_already_done(tenant):
    first = await env().run(tenant.acts.disable_connector, action_input("disable_connector"))
    second = await env().run(tenant.acts.disable_connector, action_input("disable_connector"))

    assert (first.status, first.verified) == ("done", True)
    assert tenant.connector()["Enabled"] is False
    assert (second.status, second.verified) == ("already_done", True)
    assert [c["api"] for c in tenant.writes()] == ["exo:Set-InboundConnector"]


async def test_revert_restores_the_audited_value_once(tenant):
    first = await env().run(tenant.acts.revert_connector_change, action_input("revert_connector_change"))
    second = await env().run(tenant.acts.revert_connector_change, action_input("revert_connector_change"))

    assert first.status == "done" and "198.51.100.23 to 203.0.113.5" in first.detail
    assert tenant.connector()["SenderIPAddresses"] == ["203.0.113.5"]
    assert tenant.connector()["Enabled"] is True
    assert second.status == "already_done"
    assert len(tenant.writes()) == 1


async def test_remove_connector_then_already_gone(tenant):
    first = await env().run(tenant.acts.remove_connector, action_input("remove_connector"))
    second = await env().run(tenant.acts.remove_connector, action_input("remove_connector"))

    assert first.status == "done" and second.status == "already_done"
    assert all(c["Guid"] != GUID for c in tenant.snapshot()["tenant"]["inbound_connectors"])


@pytest.mark.parametrize(("kind", "section"), [
    ("unblock_connector", "blocked_connectors"),
    ("unblock_sender", "blocked_senders"),
])
async def test_unblocks_empty_the_restricted_lists(tenant, kind, section):
    first = await env().run(activity_for(tenant, kind), action_input(kind))
    second = await env().run(activity_for(tenant, kind), action_input(kind))

    assert first.status == "done" and second.status == "already_done"
    assert tenant.snapshot()["tenant"][section] == []


async def test_revoke_sessions_moves_the_marker_and_a_retry_sees_it(tenant):
    scheduled = datetime.now(UTC)
    first = await env(scheduled).run(tenant.acts.revoke_sessions, action_input("revoke_sessions"))
    retry = await env(scheduled).run(tenant.acts.revoke_sessions, action_input("revoke_sessions"))

    assert first.status == "done" and retry.status == "already_done"
    assert tenant.user()["signInSessionsValidFromDateTime"] is not None
    assert len(tenant.writes()) == 1


async def test_require_admin_mfa_creates_a_report_only_policy_once(tenant):
    first = await env().run(tenant.acts.require_admin_mfa, action_input("require_admin_mfa"))
    second = await env().run(tenant.acts.require_admin_mfa, action_input("require_admin_mfa"))

    policies = tenant.snapshot()["tenant"]["conditional_access_policies"]
    assert first.status == "done" and "NOT enforced" in first.detail
    assert second.status == "already_done" and "NOT enforced" in second.detail
    assert len(policies) == 1
    assert policies[0]["state"] == "enabledForReportingButNotEnforced"
    assert set(policies[0]["conditions"]["users"]["includeRoles"]) == set(ADMIN_ROLE_TEMPLATE_IDS)
    assert policies[0]["grantControls"]["builtInControls"] == ["mfa"]


async def test_an_enforced_admin_mfa_policy_is_already_done(tenant_with):
    existing = {"id": "p1", "displayName": "Admins need MFA", "state": "enabled",
                "conditions": {"users": {"includeRoles": [*ADMIN_ROLE_TEMPLATE_IDS, "extra-role"]},
                               "applications": {"includeApplications": ["All"]}},
                "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}
    async with tenant_with(conditional_access_policies=[existing]) as t:
        outcome = await env().run(t.acts.require_admin_mfa, action_input("require_admin_mfa", report_only=False))

        assert outcome.status == "already_done" and "Admins need MFA" in outcome.detail
        assert t.writes() == []


async def test_classify_alert_sets_status_classification_and_determination(tenant):
    first = await env().run(tenant.acts.classify_alert, action_input("classify_alert"))
    second = await env().run(tenant.acts.classify_alert, action_input("classify_alert"))

    alert = tenant.alert()
    assert (alert["status"], alert["classification"], alert["determination"], alert["assignedTo"]) == (
        "resolved", "truePositive", "compromisedAccount", "quell")
    assert first.status == "done" and second.status == "already_done"


async def test_needs_review_classification_only_moves_the_status(tenant):
    inp = action_input("classify_alert", status="inProgress", classification=None, determination=None)
    outcome = await env().run(tenant.acts.classify_alert, inp)

    assert outcome.status == "done"
    assert (tenant.alert()["status"], tenant.alert()["classification"]) == ("inProgress", "unknown")


async def test_comment_is_posted_once_with_the_case_marker(tenant):
    first = await env().run(tenant.acts.comment_alert, action_input("comment_alert"))
    second = await env().run(tenant.acts.comment_alert, action_input("comment_alert"))

    comments = tenant.alert()["comments"]
    assert first.status == "done" and second.status == "already_done"
    assert len(comments) == 1
    assert comments[0]["comment"].startswith("quell verdict: true_positive")
    assert f"[quell case {CASE} action a2]" in comments[0]["comment"]


# --------------------------------------------------------------------------- many alerts at once


def more_alerts(t: Tenant, count: int) -> list[str]:
    """`count` more connector alerts in the tenant (copies of the example's): storm-0, storm-1, …"""
    alerts = t.emulator.state.data.alerts
    ids = [f"storm-{n}" for n in range(count)]
    for alert_id in ids:
        alerts[alert_id] = {**copy.deepcopy(alerts[ALERT]), "id": alert_id}
    return ids


async def test_a_batch_writes_back_to_every_alert_judging_each_on_its_own(tenant):
    ids = more_alerts(tenant, 45)
    tenant.emulator.state.data.alerts["storm-7"]["title"] = "Email messages containing malicious URL removed"
    batch = AlertWriteBacks(action=action_input("classify_alert"), alert_ids=[ALERT, *ids, "unknown-1"])
    result = await env().run(tenant.acts.alert_write_backs, batch)

    assert [o.alert_id for o in result.outcomes] == batch.alert_ids
    outcomes = {o.alert_id: o for o in result.outcomes}
    assert outcomes["storm-7"].status == "skipped" and "is not a connector alert" in outcomes["storm-7"].detail
    assert outcomes["unknown-1"].status == "skipped" and "Graph does not know it" in outcomes["unknown-1"].detail
    written = [a for a in batch.alert_ids if a not in ("storm-7", "unknown-1")]
    assert {outcomes[a].status for a in written} == {"done"} and all(outcomes[a].verified for a in written)
    alerts = tenant.snapshot()["alerts"]
    assert {alerts[a]["classification"] for a in written} == {"truePositive"}
    assert alerts["storm-7"]["classification"] == "unknown"
    calls = [c["api"] for c in tenant.emulator.state.calls]
    # 47 alerts in Graph batches of 20: three to read, three to write 45, three to read those again.
    assert calls.count("graph:POST /$batch") == 9
    assert len([c for c in calls if c.startswith("graph:PATCH")]) == 45


async def test_an_alert_that_keeps_failing_does_not_hold_up_the_others(tenant_with):
    async with tenant_with(faults=[{"api": "graph:PATCH /security/alerts_v2/storm-3", "status": 503}]) as t:
        ids = more_alerts(t, 10)
        batch = AlertWriteBacks(action=action_input("classify_alert"), alert_ids=ids)
        first = env(attempt=1, retry_policy=retries.TENANT)
        heartbeats: list[Any] = []
        first.on_heartbeat = heartbeats.append
        with pytest.raises(ApplicationError) as failure:
            await first.run(t.acts.alert_write_backs, batch)
        assert not failure.value.non_retryable and failure.value.next_retry_delay == timedelta(seconds=1)
        assert failure.value.message.startswith("1 of 10 alerts to try again: Graph answered 503")
        assert {a: t.snapshot()["alerts"][a]["classification"] for a in ("storm-2", "storm-3")} == {
            "storm-2": "truePositive", "storm-3": "unknown"}

        t.emulator.state.calls.clear()
        last = env(attempt=retries.TENANT.maximum_attempts, retry_policy=retries.TENANT, heartbeat_details=heartbeats[-1:])
        result = await last.run(t.acts.alert_write_backs, batch)
        outcomes = {o.alert_id: o for o in result.outcomes}
        assert outcomes["storm-3"].status == "failed" and "Graph answered 503" in outcomes["storm-3"].detail
        assert all(outcomes[a].status == "done" for a in ids if a != "storm-3")
        touched = {c["api"] for c in t.emulator.state.calls} - {"graph:POST /$batch"}
        assert touched == {"graph:GET /security/alerts_v2/storm-3", "graph:PATCH /security/alerts_v2/storm-3"}


# --------------------------------------------------------------------------- what the suspect admin left


def mailbox(t: Tenant) -> dict[str, Any]:
    return next(m for m in t.snapshot()["tenant"]["mailboxes"] if m["UserPrincipalName"] == "ceo@contoso.com")


async def test_disable_transport_rule_keeps_the_rule_disabled(tenant):
    first = await env().run(tenant.acts.disable_transport_rule, action_input("disable_transport_rule"))
    second = await env().run(tenant.acts.disable_transport_rule, action_input("disable_transport_rule"))

    rules = tenant.snapshot()["tenant"]["transport_rules"]
    assert (first.status, first.verified, second.status) == ("done", True, "already_done")
    assert [(r["Name"], r["State"]) for r in rules] == [("Copy finance mail", "Disabled")]


async def test_remove_mail_forwarding_clears_the_mailbox_and_disables_only_the_planned_rule(tenant):
    first = await env().run(tenant.acts.remove_mail_forwarding, action_input("remove_mail_forwarding"))
    second = await env().run(tenant.acts.remove_mail_forwarding, action_input("remove_mail_forwarding"))

    box = mailbox(tenant)
    assert (first.status, first.verified, second.status) == ("done", True, "already_done")
    assert (box["ForwardingSmtpAddress"], box["ForwardingAddress"], box["DeliverToMailboxAndForward"]) == (
        None, None, False)
    assert {r["Name"]: r["Enabled"] for r in box["inbox_rules"]} == {"Sync": False, "Newsletters": True}


async def test_remove_mailbox_permission_removes_only_the_granted_rights(tenant):
    first = await env().run(tenant.acts.remove_mailbox_permission, action_input("remove_mailbox_permission"))
    second = await env().run(tenant.acts.remove_mailbox_permission, action_input("remove_mailbox_permission"))

    assert (first.status, first.verified, second.status) == ("done", True, "already_done")
    assert {p["User"]: p["AccessRights"] for p in mailbox(tenant)["permissions"]} == {
        "helpdesk.op@contoso.com": ["ReadPermission"], "exadmin@contoso.com": ["ReadPermission"]}


async def test_remove_role_assignment_removes_only_the_granted_role(tenant):
    inp = action_input("remove_role_assignment", roles=["exchange administrator"])  # rule 13: any case
    first = await env().run(tenant.acts.remove_role_assignment, inp)
    second = await env().run(tenant.acts.remove_role_assignment, inp)

    user = next(u for u in tenant.snapshot()["tenant"]["users"] if u["userPrincipalName"] == "svc-sync@contoso.com")
    assert (first.status, first.verified, second.status) == ("done", True, "already_done")
    assert user["roles"] == ["Global Reader"]
    assert "no longer holds" in second.detail


@pytest.mark.parametrize(("kind", "params", "reason"), [
    ("disable_transport_rule", {"name": "Deleted rule"}, "no longer exists"),
    ("remove_mail_forwarding", {"mailbox": "gone@contoso.com"}, "no longer exists"),
    ("remove_mailbox_permission", {"mailbox": "gone@contoso.com"}, "no longer exists"),
    ("remove_role_assignment", {"user": "gone@contoso.com"}, "no longer exists"),
    ("remove_mailbox_permission", {"grants": [{"user": "intern@contoso.com", "access_rights": ["FullAccess"]}]},
     "none of the grants"),
])
async def test_an_object_already_gone_is_already_done_and_says_why(tenant, kind, params, reason):
    outcome = await env().run(activity_for(tenant, kind), action_input(kind, **params))

    assert outcome.status == "already_done" and reason in outcome.detail
    assert tenant.writes() == []


async def test_a_forwarding_rule_deleted_meanwhile_is_reported_and_the_rest_is_done(tenant):
    outcome = await env().run(tenant.acts.remove_mail_forwarding,
                              action_input("remove_mail_forwarding", inbox_rules=["Sync", "Deleted"]))

    assert outcome.status == "done" and "Deleted no longer exist" in outcome.detail


# --------------------------------------------------------------------------- dry run


@pytest.mark.parametrize("kind", list(PARAMS))
async def test_dry_run_reads_but_never_writes(tenant, kind):
    before = tenant.snapshot()
    outcome = await env().run(activity_for(tenant, kind), action_input(kind, mode="dry_run"))

    assert outcome.status == "dry_run" and outcome.detail.startswith("dry run: would ")
    assert tenant.writes() == []
    assert tenant.snapshot() == before
    assert tenant.emulator.state.calls, "a dry run still reads the current state"


# --------------------------------------------------------------------------- ignored writes


@pytest.mark.parametrize(("kind", "api"), [
    ("disable_connector", "exo:Set-InboundConnector"),
    ("revert_connector_change", "exo:Set-InboundConnector"),
    ("remove_connector", "exo:Remove-InboundConnector"),
    ("unblock_connector", "exo:Remove-BlockedConnector"),
    ("unblock_sender", "exo:Remove-BlockedSenderAddress"),
    ("reset_admin_password", "graph:PATCH /users/{id}"),
    ("revoke_sessions", "graph:POST /users/{id}/revokeSignInSessions"),
    ("require_admin_mfa", "graph:POST /identity/conditionalAccess/policies"),
    ("classify_alert", "graph:PATCH /security/alerts_v2/{id}"),
    ("comment_alert", "graph:POST /security/alerts_v2/{id}/comments"),
    ("disable_transport_rule", "exo:Disable-TransportRule"),
    ("remove_mail_forwarding", "exo:Set-Mailbox"),
    ("remove_mail_forwarding", "exo:Disable-InboxRule"),
    ("remove_mailbox_permission", "exo:Remove-MailboxPermission"),
    ("remove_role_assignment", "graph:DELETE /roleManagement/directory/roleAssignments/{id}"),
])
async def test_a_write_the_tenant_ignores_fails_verification_retryably(tenant_with, kind, api):
    async with tenant_with(faults=[{"api": api, "effect": "ignore", "times": 1}]) as t:
        with pytest.raises(ApplicationError) as failure:
            await env().run(activity_for(t, kind), action_input(kind))
        assert failure.value.type == "VerificationFailed" and not failure.value.non_retryable

        retried = await env().run(activity_for(t, kind), action_input(kind))
        assert retried.status == "done", "the retry reads again, writes again and verifies"


# --------------------------------------------------------------------------- the password


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every structlog event and stdlib record (any logger, DEBUG and up) as text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.getMessage()} {record.__dict__}")

    handler, root = Keep(level=logging.DEBUG), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as events:
            yield lines
        lines.extend(repr(e) for e in events)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
def generated(monkeypatch) -> list[str]:
    """The passwords the activity generates, seen from outside it."""
    seen: list[str] = []
    real = remediation._new_password

    def spy() -> str:
        seen.append(real())
        return seen[-1]

    monkeypatch.setattr(remediation, "_new_password", spy)
    return seen


async def test_password_reset_never_exposes_the_password(tenant, generated):
    scheduled = datetime.now(UTC)
    with captured_logs() as logs:
        first = await env(scheduled).run(tenant.acts.reset_admin_password, action_input("reset_admin_password"))
        retry = await env(scheduled).run(tenant.acts.reset_admin_password, action_input("reset_admin_password"))

    assert (first.status, first.verified, retry.status) == ("done", True, "already_done")
    assert len(generated) == 1 and len(generated[0]) >= 16
    password = generated[0]
    assert logs, "the activity logs its outcome"
    assert all(password not in line for line in logs)
    assert password not in first.model_dump_json() and password not in retry.model_dump_json()
    assert tenant.user()["passwordProfile"]["forceChangePasswordNextSignIn"] is True
    assert password not in str(tenant.snapshot())


async def test_failed_password_reset_keeps_the_password_out_of_the_error(tenant_with, generated):
    async with tenant_with(faults=[{"api": "graph:PATCH /users/{id}", "status": 400}]) as t:
        with captured_logs() as logs, pytest.raises(ApplicationError) as failure:
            await env().run(t.acts.reset_admin_password, action_input("reset_admin_password"))

    password = generated[0]
    chain: list[BaseException] = []
    error: BaseException | None = failure.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert failure.value.non_retryable and failure.value.type == "GraphHttp400"
    assert all(password not in f"{e!s} {e!r} {getattr(e, 'details', '')}" for e in chain)
    assert all(password not in line for line in logs)


def test_generated_passwords_are_strong_and_distinct():
    passwords = {remediation._new_password() for _ in range(50)}

    assert len(passwords) == 50
    for p in passwords:
        assert len(p) == 24
        assert any(c.isupper() for c in p) and any(c.islower() for c in p)
        assert any(c.isdigit() for c in p) and any(c in remediation.PASSWORD_SYMBOLS for c in p)


# --------------------------------------------------------------------------- the approval gate


def refused(failure: pytest.ExceptionInfo[ApplicationError]) -> str:
    assert failure.value.type == "NotApproved" and failure.value.non_retryable
    return str(failure.value)


async def test_without_a_valid_signed_approval_nothing_is_touched(tenant):
    unapproved = action_input("disable_connector", approvers=())
    crafted = unapproved.model_copy(update={  # the input says `auto`; the worker's policy says otherwise
        "action": unapproved.action.model_copy(update={"policy": "auto"}),
        "plan": Plan(actions=[unapproved.action.model_copy(update={"policy": "auto"})]),
    })
    forged = action_input("disable_connector")
    forged = forged.model_copy(update={"decisions": [approval(forged.plan, key=Ed25519PrivateKey.generate())]})
    for inp, reason in ((unapproved, "has 0"), (crafted, "has 0"), (forged, "unknown key")):
        with pytest.raises(ApplicationError) as failure:
            await env().run(tenant.acts.disable_connector, inp)
        assert reason in refused(failure)
    assert tenant.emulator.state.calls == [] and tenant.connector()["Enabled"] is True


@pytest.mark.parametrize("kind", [k for k in PARAMS if APPROVAL.for_action(k) != "auto"])
async def test_every_action_that_needs_approval_is_gated(tenant, kind):
    """No action activity (a new one included) writes without the worker's approval check."""
    with pytest.raises(ApplicationError) as failure:
        await env().run(remediation.BY_KIND[kind].__get__(tenant.acts), action_input(kind, approvers=()))
    assert "has 0" in refused(failure)
    assert tenant.writes() == []


def test_every_action_kind_has_test_params():
    assert set(PARAMS) == set(remediation.BY_KIND)


async def test_a_two_person_action_needs_two_people_and_a_rejection_vetoes(tenant):
    one = action_input("remove_connector", approvers=("soc1@contoso.com",))
    with pytest.raises(ApplicationError) as failure:
        await env().run(tenant.acts.remove_connector, one)
    assert "needs 2" in refused(failure)
    vetoed = one.model_copy(update={"decisions": [*one.decisions, approval(one.plan, "soc2@contoso.com", approve=False)]})
    with pytest.raises(ApplicationError) as failure:
        await env().run(tenant.acts.remove_connector, vetoed)
    assert "rejected by soc2@contoso.com" in refused(failure)
    assert tenant.writes() == []
    assert (await env().run(tenant.acts.remove_connector, action_input("remove_connector"))).status == "done"


async def test_an_action_outside_the_signed_plan_is_refused(tenant):
    approved = action_input("revert_connector_change")
    swapped = approved.model_copy(update={"action": approved.action.model_copy(
        update={"params": approved.action.params.model_copy(update={"restore": {"SenderIPAddresses": ["6.6.6.6"]}})})})
    with pytest.raises(ApplicationError) as failure:
        await env().run(tenant.acts.revert_connector_change, swapped)
    assert "not part of the plan" in refused(failure)
    assert tenant.writes() == []


@pytest.mark.parametrize("kind", ["classify_alert", "comment_alert"])
async def test_alerts_graph_does_not_know_or_that_are_not_connector_alerts_are_never_written(tenant, kind):
    unknown = await env().run(activity_for(tenant, kind), action_input(kind, alert_id="generic-payload-42"))
    assert unknown.status == "skipped" and "Graph does not know it" in unknown.detail
    tenant.emulator.state.data.alerts[ALERT]["title"] = "Email messages containing malicious URL removed"
    other = await env().run(activity_for(tenant, kind), action_input(kind))
    assert other.status == "skipped" and "is not a connector alert" in other.detail
    assert tenant.writes() == []


async def test_dry_run_of_an_action_already_in_place_says_so(tenant):
    await env().run(tenant.acts.disable_connector, action_input("disable_connector"))
    outcome = await env().run(tenant.acts.disable_connector, action_input("disable_connector", mode="dry_run"))

    assert outcome.status == "dry_run" and outcome.detail.startswith("dry run: nothing to do, ")
    assert len(tenant.writes()) == 1
