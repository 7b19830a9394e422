"""Remediation actions: one idempotent, verified activity per action kind (`action.<kind>`),
and `BY_KIND`, the one table from an action's kind to its activity.

Before it touches the tenant, every action passes `approval_gate.authorise` against the worker's
current settings (kind `auto`, or enough valid signed approvals for this case, action and plan).

Every action reads the current state first and answers `already_done` when the tenant is
already where the action would put it, so a Temporal retry or a rerun is safe. In `dry_run` it
reads and reports what it would do, and writes nothing. Otherwise it acts, reads again, and
raises a retryable `VerificationFailed` when the effect is not visible (Exchange and Graph can
accept a write and not apply it); after the retries the workflow marks the action failed.

The generated password is never logged, stored, returned or put in an error: it exists only
inside the PATCH request body.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.conditional_access_applications import ConditionalAccessApplications
from msgraph.generated.models.conditional_access_client_app import ConditionalAccessClientApp
from msgraph.generated.models.conditional_access_condition_set import ConditionalAccessConditionSet
from msgraph.generated.models.conditional_access_grant_control import ConditionalAccessGrantControl
from msgraph.generated.models.conditional_access_grant_controls import ConditionalAccessGrantControls
from msgraph.generated.models.conditional_access_policy import ConditionalAccessPolicy
from msgraph.generated.models.conditional_access_policy_state import ConditionalAccessPolicyState
from msgraph.generated.models.conditional_access_users import ConditionalAccessUsers
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.role_management.directory.role_assignments.role_assignments_request_builder import (
    RoleAssignmentsRequestBuilder,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.approval_gate import ApprovalLoader, authorise
from activities.alert_parsing import POLICY_TITLE
from activities.clients import (
    BATCH_LIMIT,
    ClientPool,
    ExoClient,
    ExoError,
    ExoNotFound,
    GraphHttp,
    TenantClients,
    graph_failure,
)
from activities.pacing import heartbeating
from activities.tenant_cache import BLOCK_LISTS, CONNECTORS, TenantCache
from workflows.audit import is_empty
from workflows.types import (
    ActionInput,
    ActionKind,
    ActionOutcome,
    AlertOutcome,
    AlertWriteBackResult,
    AlertWriteBacks,
    ClassifyParams,
    CommentParams,
    ConnectorParams,
    ConnectorTarget,
    Frozen,
    MailboxPermissionParams,
    MailForwardingParams,
    MfaParams,
    RevertParams,
    RoleAssignmentParams,
    TransportRuleParams,
    UnblockConnectorParams,
    UnblockSenderParams,
    UserParams,
    split_list,
)

log = structlog.get_logger("quell.remediation")

P = TypeVar("P", bound=Frozen)
T = TypeVar("T")

# Directory role template ids (the same in every tenant) that the admin MFA policy must cover.
ADMIN_ROLE_TEMPLATE_IDS = (
    "62e90394-69f5-4237-9190-012177145e10",  # Global Administrator
    "29232cdf-9323-42fd-ade2-1d097af3e4de",  # Exchange Administrator
    "194ae4cb-b126-40b2-bd5b-6091b380977d",  # Security Administrator
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",  # Privileged Authentication Administrator
    "e8611ab8-c189-46e8-94e1-60213ab1f814",  # Privileged Role Administrator
    "fe930be7-5e62-47db-91af-98c3a49a38b1",  # User Administrator
)
MFA_POLICY_NAME = "quell: require MFA for admin roles"
ASSIGNEE = "quell"
PASSWORD_LENGTH = 24
# Symbols Entra ID accepts in passwords; all four character classes are always present.
PASSWORD_SYMBOLS = "!@#$%^&*-_=+?"
USER_MARKERS = ["id", "userPrincipalName", "lastPasswordChangeDateTime", "signInSessionsValidFromDateTime"]


class RemediationActivities:
    """The `action.*` activities; the workflow runs one per approved PlannedAction, in plan order."""

    def __init__(self, pool: ClientPool, approval: ApprovalLoader, cache: TenantCache) -> None:
        """`cache`: the evidence activities' tenant cache, which forgets what an action changes."""
        self._pool = pool
        self._approval = approval
        self._cache = cache

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [*(method.__get__(self) for method in BY_KIND.values()), self.alert_write_backs]

    # ------------------------------------------------------------------ Exchange: connectors

    @activity.defn(name="action.disable-connector")
    async def disable_connector(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, ConnectorParams)
        exo = self._authorised_clients(inp).exo
        before = await _connector(exo, p)
        if before is None:
            raise ApplicationError(f"connector {p.identity} not found", type="ConnectorNotFound", non_retryable=True)
        if before.get("Enabled") is False:
            return run.already(f"{before.get('Name')} is already disabled")
        if run.dry:
            return run.would(f"disable {before.get('Name')} (enabled now)")
        with self._changing(inp, CONNECTORS):
            await _invoke(exo, f"Set-{_noun(p)}", {"Identity": p.identity, "Enabled": False})
        after = await _connector(exo, p)
        if after is None or after.get("Enabled") is not False:
            raise run.not_verified(f"{before.get('Name')} is still enabled after Set-{_noun(p)}")
        return run.done(f"disabled {before.get('Name')}")

    @activity.defn(name="action.remove-connector")
    async def remove_connector(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, ConnectorParams)
        exo = self._authorised_clients(inp).exo
        before = await _connector(exo, p)
        if before is None:
            return run.already(f"connector {p.identity} no longer exists")
        if run.dry:
            return run.would(f"remove {before.get('Name')}")
        with self._changing(inp, CONNECTORS):
            await _invoke(exo, f"Remove-{_noun(p)}", {"Identity": p.identity, "Confirm": False})
        if await _connector(exo, p) is not None:
            raise run.not_verified(f"{before.get('Name')} still exists after Remove-{_noun(p)}")
        return run.done(f"removed {before.get('Name')}")

    @activity.defn(name="action.revert-connector-change")
    async def revert_connector_change(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, RevertParams)
        exo = self._authorised_clients(inp).exo
        before = await _connector(exo, p)
        if before is None:
            raise ApplicationError(f"connector {p.identity} not found", type="ConnectorNotFound", non_retryable=True)
        differing = {k: v for k, v in p.restore.items() if not _same(before.get(k), v)}
        if not differing:
            return run.already(f"{before.get('Name')} already has {_describe(p.restore)}")
        changes = "; ".join(f"{k} from {_show(before.get(k))} to {_show(v)}" for k, v in differing.items())
        if run.dry:
            return run.would(f"set {changes} on {before.get('Name')}")
        with self._changing(inp, CONNECTORS):
            await _invoke(exo, f"Set-{_noun(p)}", {"Identity": p.identity, **differing})
        after = await _connector(exo, p) or {}
        if still := [k for k, v in differing.items() if not _same(after.get(k), v)]:
            raise run.not_verified(f"{', '.join(still)} not restored on {before.get('Name')} after Set-{_noun(p)}")
        return run.done(f"reverted {before.get('Name')}: {changes}")

    @activity.defn(name="action.unblock-connector")
    async def unblock_connector(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, UnblockConnectorParams)
        label = f"connector {p.connector_id}"
        return await _lift(self._authorised_clients(inp).exo, run, BLOCKED_CONNECTOR, p.connector_id, label,
                           self._changing(inp, BLOCK_LISTS))

    @activity.defn(name="action.unblock-sender")
    async def unblock_sender(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, UnblockSenderParams)
        return await _lift(self._authorised_clients(inp).exo, run, BLOCKED_SENDER, p.sender_address, p.sender_address,
                           self._changing(inp, BLOCK_LISTS))

    # ------------------------------------------------------------------ Exchange: what the suspect admins left
    # Rule 5: an object that no longer exists when the action runs is `already_done`, saying so.

    @activity.defn(name="action.disable-transport-rule")
    async def disable_transport_rule(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, TransportRuleParams)
        exo = self._authorised_clients(inp).exo
        before = await _one(exo, "Get-TransportRule", {"Identity": p.name})
        if before is None:
            return run.already(f"mail flow rule {p.name} no longer exists")
        if _fold(before.get("State")) == "disabled":
            return run.already(f"mail flow rule {p.name} is already disabled")
        if run.dry:
            return run.would(f"disable mail flow rule {p.name} (State {before.get('State')} now)")
        identity = str(before.get("Guid") or p.name)
        await _invoke(exo, "Disable-TransportRule", {"Identity": identity, "Confirm": False})
        after = await _one(exo, "Get-TransportRule", {"Identity": identity})
        if after is None or _fold(after.get("State")) != "disabled":
            raise run.not_verified(f"mail flow rule {p.name} is not disabled after Disable-TransportRule")
        return run.done(f"disabled mail flow rule {p.name} (kept, not deleted: it is evidence)")

    @activity.defn(name="action.remove-mail-forwarding")
    async def remove_mail_forwarding(self, inp: ActionInput) -> ActionOutcome:
        """Clear the mailbox's forwarding (whoever set it) and disable the inbox rules the suspect
        admins made forward (kept as evidence, not deleted)."""
        run, p = _Run(inp), _params(inp, MailForwardingParams)
        exo = self._authorised_clients(inp).exo
        before = await _one(exo, "Get-Mailbox", {"Identity": p.mailbox})
        if before is None:
            return run.already(f"mailbox {p.mailbox} no longer exists")
        clear = _forwarding_to_clear(before)
        rules, gone = await _forwarding_rules(exo, p)
        gone_note = f"; inbox rule(s) {', '.join(gone)} no longer exist" if gone else ""
        if not clear and not rules:
            return run.already(f"{p.mailbox} forwards nothing and its forwarding inbox rules are disabled{gone_note}")
        todo = [f"clear {', '.join(clear)}"] * bool(clear) + [f"disable inbox rule(s) {', '.join(rules)}"] * bool(rules)
        if run.dry:
            return run.would(f"{' and '.join(todo)} on {p.mailbox}")
        if clear:
            await _invoke(exo, "Set-Mailbox", {"Identity": p.mailbox, **clear})
        for rule in rules:
            await _invoke(exo, "Disable-InboxRule", {"Identity": f"{p.mailbox}\\{rule}", "Confirm": False})
        after = await _one(exo, "Get-Mailbox", {"Identity": p.mailbox}) or {}
        still, _ = await _forwarding_rules(exo, p)
        if left := [*_forwarding_to_clear(after), *still]:
            raise run.not_verified(f"{', '.join(left)} still forward mail of {p.mailbox}")
        return run.done(f"{' and '.join(todo)} on {p.mailbox}{gone_note}")

    @activity.defn(name="action.remove-mailbox-permission")
    async def remove_mailbox_permission(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, MailboxPermissionParams)
        exo = self._authorised_clients(inp).exo
        held = await _granted(exo, p)
        if held is None:
            return run.already(f"mailbox {p.mailbox} no longer exists")
        if not held:
            return run.already(f"none of the grants on {p.mailbox} is present ({_grants(p)})")
        described = "; ".join(f"{user}: {', '.join(rights)}" for user, rights in held.items())
        if run.dry:
            return run.would(f"remove {described} from {p.mailbox}")
        for user, rights in held.items():
            await _invoke(exo, "Remove-MailboxPermission",
                          {"Identity": p.mailbox, "User": user, "AccessRights": rights, "Confirm": False})
        if still := await _granted(exo, p):
            raise run.not_verified(f"{p.mailbox} still grants " + "; ".join(f"{u}: {', '.join(r)}" for u, r in still.items()))
        return run.done(f"removed {described} from {p.mailbox}")

    # ------------------------------------------------------------------ Graph: the acting admin

    @activity.defn(name="action.reset-admin-password")
    async def reset_admin_password(self, inp: ActionInput) -> ActionOutcome:
        """Idempotency marker: a password change at or after this activity was first scheduled.

        Temporal keeps `scheduled_time` across retries and sets it after the approval, so a
        change since then is this action's own earlier attempt; an attacker's change during the
        approval wait is older and does not count as done.
        """
        run, p = _Run(inp), _params(inp, UserParams)
        users = self._authorised_clients(inp).graph.users.by_user_id(p.user)
        before = await _read(users.get(_select(USER_MARKERS)))
        since = activity.info().scheduled_time
        if _at_or_after(before.last_password_change_date_time, since):
            return run.already(f"password of {before.user_principal_name} already reset at "
                               f"{before.last_password_change_date_time:%Y-%m-%d %H:%M:%S} UTC")
        if run.dry:
            return run.would(f"reset the password of {before.user_principal_name} (change at next sign-in)")
        # The password is built inside the request body and referenced nowhere else.
        await _graph(users.patch(User(password_profile=PasswordProfile(
            password=_new_password(), force_change_password_next_sign_in=True,
        ))), secret=True)
        after = await _read(users.get(_select(USER_MARKERS)))
        if not _moved(before.last_password_change_date_time, after.last_password_change_date_time):
            raise run.not_verified(f"lastPasswordChangeDateTime of {before.user_principal_name} did not move")
        return run.done(f"password of {before.user_principal_name} reset; it must be changed at next sign-in")

    @activity.defn(name="action.revoke-sessions")
    async def revoke_sessions(self, inp: ActionInput) -> ActionOutcome:
        """Idempotency marker: signInSessionsValidFromDateTime at or after the first scheduling."""
        run, p = _Run(inp), _params(inp, UserParams)
        users = self._authorised_clients(inp).graph.users.by_user_id(p.user)
        before = await _read(users.get(_select(USER_MARKERS)))
        if _at_or_after(before.sign_in_sessions_valid_from_date_time, activity.info().scheduled_time):
            return run.already(f"sessions of {before.user_principal_name} already revoked at "
                               f"{before.sign_in_sessions_valid_from_date_time:%Y-%m-%d %H:%M:%S} UTC")
        if run.dry:
            return run.would(f"revoke the sign-in sessions of {before.user_principal_name}")
        await _graph(users.revoke_sign_in_sessions.post())
        after = await _read(users.get(_select(USER_MARKERS)))
        if not _moved(before.sign_in_sessions_valid_from_date_time, after.sign_in_sessions_valid_from_date_time):
            raise run.not_verified(f"signInSessionsValidFromDateTime of {before.user_principal_name} did not move")
        return run.done(f"sign-in sessions of {before.user_principal_name} revoked")

    @activity.defn(name="action.require-admin-mfa")
    async def require_admin_mfa(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, MfaParams)
        policies = self._authorised_clients(inp).graph.identity.conditional_access.policies
        existing = await _admin_mfa_policies(policies)
        enforced = [x for x in existing if x.state == ConditionalAccessPolicyState.Enabled]
        if enforced:
            return run.already(f"policy '{enforced[0].display_name}' already requires MFA for the admin roles")
        reporting = [x for x in existing if x.state == ConditionalAccessPolicyState.EnabledForReportingButNotEnforced]
        if p.report_only and reporting:
            return run.already(f"report-only policy '{reporting[0].display_name}' already covers the admin "
                               "roles; it is NOT enforced until an admin enables it")
        state = (ConditionalAccessPolicyState.EnabledForReportingButNotEnforced if p.report_only
                 else ConditionalAccessPolicyState.Enabled)
        mode = "report-only (enabledForReportingButNotEnforced), NOT enforced" if p.report_only else "enforced"
        if run.dry:
            return run.would(f"create conditional access policy '{MFA_POLICY_NAME}' requiring MFA for "
                             f"{len(ADMIN_ROLE_TEMPLATE_IDS)} admin roles, {mode}")
        await _graph(policies.post(ConditionalAccessPolicy(
            display_name=MFA_POLICY_NAME,
            state=state,
            conditions=ConditionalAccessConditionSet(
                users=ConditionalAccessUsers(include_roles=list(ADMIN_ROLE_TEMPLATE_IDS)),
                applications=ConditionalAccessApplications(include_applications=["All"]),
                client_app_types=[ConditionalAccessClientApp.All],
            ),
            grant_controls=ConditionalAccessGrantControls(
                operator="OR", built_in_controls=[ConditionalAccessGrantControl.Mfa],
            ),
        )))
        if not any(x.state == state for x in await _admin_mfa_policies(policies)):
            raise run.not_verified(f"no {state.value} policy requiring MFA for the admin roles after creating one")
        return run.done(f"created conditional access policy '{MFA_POLICY_NAME}' requiring MFA for the admin "
                        f"roles, {mode}")

    @activity.defn(name="action.remove-role-assignment")
    async def remove_role_assignment(self, inp: ActionInput) -> ActionOutcome:
        run, p = _Run(inp), _params(inp, RoleAssignmentParams)
        graph = self._authorised_clients(inp).graph
        try:
            user = await _read(graph.users.by_user_id(p.user).get(_select(["id", "userPrincipalName"])))
        except ApplicationError as failure:
            if failure.type == "GraphHttp404":
                return run.already(f"account {p.user} no longer exists")
            raise
        assignments = graph.role_management.directory.role_assignments
        held = await _role_assignments(assignments, str(user.id), p.roles)
        if not held:
            return run.already(f"{p.user} no longer holds {', '.join(p.roles)}")
        names = ", ".join(held.values())
        if run.dry:
            return run.would(f"remove {names} from {p.user}")
        for assignment_id in held:
            try:
                await _graph(assignments.by_unified_role_assignment_id(assignment_id).delete())
            except ApplicationError as failure:
                if failure.type != "GraphHttp404":  # removed meanwhile: that is what we want
                    raise
        if still := await _role_assignments(assignments, str(user.id), p.roles):
            raise run.not_verified(f"{p.user} still holds {', '.join(still.values())}")
        return run.done(f"removed {names} from {p.user}")

    # ------------------------------------------------------------------ Graph: the alerts

    @activity.defn(name="action.classify-alert")
    async def classify_alert(self, inp: ActionInput) -> ActionOutcome:
        """The action's own alert (cases started before batched write-backs run one per alert)."""
        return await self._one_alert(inp, _params(inp, ClassifyParams).alert_id)

    @activity.defn(name="action.comment-alert")
    async def comment_alert(self, inp: ActionInput) -> ActionOutcome:
        """The action's own alert. Raw Graph calls (the SDK's alert comment model is broken,
        msgraph-sdk-python#1168); the comment's last line names the case and action, and an alert
        that has such a comment already is `already_done`."""
        return await self._one_alert(inp, _params(inp, CommentParams).alert_id)

    @activity.defn(name="action.alert-write-backs")
    async def alert_write_backs(self, inp: AlertWriteBacks) -> AlertWriteBackResult:
        """One classify or comment action for a batch of the case's alerts, each alert judged on
        its own: Graph JSON batches of 20, read, write, read again. An alert that failed in a way
        worth retrying is left for the next attempt (Temporal's retry, after the longest
        Retry-After); the others' outcomes travel in the heartbeat, so that attempt does only what
        is left. On the last attempt, or for an error that will not pass, the alert is `failed`."""
        info = activity.info()
        http = self._authorised_clients(inp.action).graph_http
        run, change = _Run(inp.action), _alert_change(inp.action)
        outcomes = {o.alert_id: o for o in _earlier_outcomes(info)}
        retry: list[ApplicationError] = []
        todo = [a for a in dict.fromkeys(inp.alert_ids) if a not in outcomes]

        def settled() -> AlertWriteBackResult:
            return AlertWriteBackResult(outcomes=list(outcomes.values()))

        async with heartbeating(settled):  # its turns may be minutes away in a storm
            for first in range(0, len(todo), BATCH_LIMIT):
                answers = await _write_alerts(http, run, inp.action.tenant_id, change, todo[first:first + BATCH_LIMIT])
                for alert_id, answer in answers.items():
                    if isinstance(answer, ActionOutcome):
                        outcomes[alert_id] = AlertOutcome(alert_id=alert_id, **answer.model_dump())
                    elif answer.non_retryable or _last_attempt(info):
                        outcomes[alert_id] = AlertOutcome(alert_id=alert_id, status="failed", verified=False,
                                                          detail=f"alert {alert_id}: {answer.message}"[:500])
                    else:
                        retry.append(answer)
                activity.heartbeat(settled())
        if retry:
            delays = [e.next_retry_delay for e in retry if e.next_retry_delay is not None]
            raise ApplicationError(f"{len(retry)} of {len(inp.alert_ids)} alerts to try again: {retry[0].message}"[:500],
                                   type=retry[0].type, next_retry_delay=max(delays, default=None))
        return AlertWriteBackResult(outcomes=[outcomes[a] for a in inp.alert_ids])

    async def _one_alert(self, inp: ActionInput, alert_id: str) -> ActionOutcome:
        http = self._authorised_clients(inp).graph_http
        answer = (await _write_alerts(http, _Run(inp), inp.tenant_id, _alert_change(inp), [alert_id]))[alert_id]
        if isinstance(answer, ApplicationError):
            raise answer
        return answer

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _changing(self, inp: ActionInput, fact: str) -> Iterator[None]:
        """Around a write: afterwards the cases of this worker read the tenant's `fact` again (also
        when the write failed: it may have applied)."""
        try:
            yield
        finally:
            self._cache.forget(inp.tenant_id, fact)

    def _authorised_clients(self, inp: ActionInput) -> TenantClients:
        """The tenant's clients, only for an action the worker's approval settings let run."""
        authorise(inp, self._approval())
        return self._pool.for_tenant(inp.tenant_id)


class _Run:
    """One execution of one action: its bound log context and its outcomes and errors."""

    def __init__(self, inp: ActionInput) -> None:
        self.dry = inp.mode == "dry_run"
        self.because = f"Remediated by quell case {inp.case_id}"
        self._log = log.bind(case=inp.case_id, action=inp.action.id, kind=inp.action.kind,
                             target=inp.action.target, mode=inp.mode, attempt=activity.info().attempt)

    def done(self, detail: str) -> ActionOutcome:
        self._log.info("action done", detail=detail)
        return ActionOutcome(status="done", verified=True, detail=detail)

    def already(self, detail: str) -> ActionOutcome:
        if self.dry:
            self._log.info("dry run", detail=detail)
            return ActionOutcome(status="dry_run", verified=False, detail=f"dry run: nothing to do, {detail}")
        self._log.info("action already done", detail=detail)
        return ActionOutcome(status="already_done", verified=True, detail=detail)

    def would(self, detail: str) -> ActionOutcome:
        self._log.info("dry run", detail=detail)
        return ActionOutcome(status="dry_run", verified=False, detail=f"dry run: would {detail}")

    def refused(self, detail: str) -> ActionOutcome:
        """Nothing written, on purpose (the detail says why)."""
        self._log.warning("action refused", detail=detail)
        if self.dry:
            return ActionOutcome(status="dry_run", verified=False, detail=f"dry run: would not write, {detail}")
        return ActionOutcome(status="skipped", verified=False, detail=detail)

    def not_verified(self, detail: str) -> ApplicationError:
        self._log.warning("action not verified", detail=detail)
        # Retryable: a write that was silently ignored is worth repeating; the retry re-reads first.
        return ApplicationError(detail, type="VerificationFailed")


def _params(inp: ActionInput, model: type[P]) -> P:
    """The action's params, typed when the plan was made, as this activity's model."""
    if not isinstance(inp.action.params, model):
        raise ApplicationError(
            f"{inp.action.id} {inp.action.kind} is not an action for this activity ({model.__name__})",
            type="WrongActionActivity",
            non_retryable=True,
        )
    return inp.action.params


async def _graph(call: Awaitable[T | None], secret: bool = False) -> T | None:
    """Await an SDK call, mapping Graph errors to the ApplicationError Temporal should see.

    `secret=True` drops the exception chain too, so nothing from a request that carried a
    password can reach the failure Temporal records.
    """
    try:
        return await call
    except APIError as error:
        if secret:
            raise graph_failure(error) from None
        raise graph_failure(error) from error


async def _read(call: Awaitable[T | None]) -> T:
    """A Graph read that must return an object (a 204 here means the API answered nonsense)."""
    result = await _graph(call)
    if result is None:
        raise ApplicationError("Graph returned no object for a read", type="GraphEmptyResponse")
    return result


async def _invoke(exo: ExoClient, cmdlet: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return await exo.invoke(cmdlet, parameters)
    except ExoError as error:
        # A cmdlet error (object not found, invalid value) fails the same way on every retry.
        kind = "ExchangeObjectNotFound" if isinstance(error, ExoNotFound) else "ExchangeCmdletFailed"
        raise ApplicationError(str(error), type=kind, non_retryable=True) from error


async def _existing(exo: ExoClient, cmdlet: str, parameters: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A Get- cmdlet's rows, or None when the object it names by `-Identity` does not exist."""
    try:
        return await _invoke(exo, cmdlet, parameters)
    except ApplicationError as failure:
        if failure.type == "ExchangeObjectNotFound":
            return None
        raise


async def _one(exo: ExoClient, cmdlet: str, parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The object a Get- cmdlet names by `-Identity`, or None when it does not exist."""
    rows = await _existing(exo, cmdlet, parameters)
    return rows[0] if rows else None


def _fold(value: Any) -> str:
    return str(value or "").strip().casefold()


def _forwarding_to_clear(mailbox: dict[str, Any]) -> dict[str, Any]:
    """The Set-Mailbox parameters that stop this mailbox forwarding (rule 11: empty values are none)."""
    clear: dict[str, Any] = {
        name: None for name in ("ForwardingSmtpAddress", "ForwardingAddress") if not is_empty(mailbox.get(name))
    }
    if mailbox.get("DeliverToMailboxAndForward") is True:
        clear["DeliverToMailboxAndForward"] = False
    return clear


async def _forwarding_rules(exo: ExoClient, p: MailForwardingParams) -> tuple[list[str], list[str]]:
    """(the planned inbox rules still enabled, the planned ones that no longer exist)."""
    if not p.inbox_rules:
        return [], []
    rows = await _invoke(exo, "Get-InboxRule", {"Mailbox": p.mailbox})
    by_name = {_fold(r.get("Name")): r for r in rows}
    enabled = [n for n in p.inbox_rules if _fold(n) in by_name and by_name[_fold(n)].get("Enabled") is not False]
    return enabled, [n for n in p.inbox_rules if _fold(n) not in by_name]


async def _granted(exo: ExoClient, p: MailboxPermissionParams) -> dict[str, list[str]] | None:
    """Grantee -> the planned rights it still holds on the mailbox (None: the mailbox is gone)."""
    rows = await _existing(exo, "Get-MailboxPermission", {"Identity": p.mailbox})
    if rows is None:
        return None
    held: dict[str, list[str]] = {}
    for grant in p.grants:
        rights = {_fold(r) for row in rows if _fold(row.get("User")) == _fold(grant.user) and row.get("Deny") is not True
                  for r in split_list(row.get("AccessRights"))}
        if present := [r for r in grant.access_rights if _fold(r) in rights]:
            held[grant.user] = present
    return held


def _grants(p: MailboxPermissionParams) -> str:
    return "; ".join(f"{g.user}: {', '.join(g.access_rights)}" for g in p.grants)


async def _role_assignments(assignments: RoleAssignmentsRequestBuilder, principal_id: str, roles: list[str]) -> dict[str, str]:
    """Assignment id -> role name, for the principal's assignments of these roles (compared case-insensitively)."""
    wanted = {_fold(r) for r in roles}
    page = await _read(assignments.get(RequestConfiguration(
        query_parameters=RoleAssignmentsRequestBuilder.RoleAssignmentsRequestBuilderGetQueryParameters(
            filter=f"principalId eq '{principal_id}'", expand=["roleDefinition"],
        )
    )))
    return {
        str(a.id): str(a.role_definition.display_name)
        for a in page.value or []
        if a.id and a.role_definition is not None and _fold(a.role_definition.display_name) in wanted
    }


def _noun(p: ConnectorTarget) -> str:
    return "InboundConnector" if p.direction == "inbound" else "OutboundConnector"


async def _connector(exo: ExoClient, p: ConnectorTarget) -> dict[str, Any] | None:
    # List and match the Guid: "not found" then is an empty result, not a cmdlet error to parse.
    rows = await _invoke(exo, f"Get-{_noun(p)}", {})
    return next((r for r in rows if str(r.get("Guid", "")).casefold() == p.identity.casefold()), None)


@dataclass(frozen=True)
class _Restriction:
    """A kind of restricted entity, as Exchange lists it (Get-<noun>) and lifts it (Remove-<noun>)."""

    noun: str
    key: str
    """The property that names the entity in both cmdlets."""
    listed_on: str


BLOCKED_CONNECTOR = _Restriction("BlockedConnector", "ConnectorId", "the Restricted entities list")
BLOCKED_SENDER = _Restriction("BlockedSenderAddress", "SenderAddress", "the restricted users list")


async def _restricted(exo: ExoClient, restriction: _Restriction, value: str) -> bool:
    rows = await _invoke(exo, f"Get-{restriction.noun}", {})
    return any(str(r.get(restriction.key, "")).casefold() == value.casefold() for r in rows)


async def _lift(
    exo: ExoClient, run: _Run, restriction: _Restriction, value: str, label: str, changing: AbstractContextManager[None]
) -> ActionOutcome:
    """Take `value` off the restriction's list: already done, dry run, or remove (within `changing`) and verify."""
    if not await _restricted(exo, restriction, value):
        return run.already(f"{label} is not on {restriction.listed_on}")
    if run.dry:
        return run.would(f"remove {label} from {restriction.listed_on}")
    with changing:
        await _invoke(exo, f"Remove-{restriction.noun}", {restriction.key: value, "Reason": run.because})
    if await _restricted(exo, restriction, value):
        raise run.not_verified(f"{label} is still restricted after Remove-{restriction.noun}")
    return run.done(f"{label} removed from {restriction.listed_on}")


def _select(fields: list[str]) -> RequestConfiguration:
    return RequestConfiguration(
        query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=fields)
    )


def _at_or_after(value: datetime | None, since: datetime) -> bool:
    # Graph stamps these markers in whole seconds: compare at that precision.
    return value is not None and value >= since.replace(microsecond=0)


def _moved(before: datetime | None, after: datetime | None) -> bool:
    return after is not None and (before is None or after > before)


def _new_password() -> str:
    """A random password with all four character classes (Entra ID needs three of four)."""
    classes = (string.ascii_uppercase, string.ascii_lowercase, string.digits, PASSWORD_SYMBOLS)
    alphabet = "".join(classes)
    chars = [secrets.choice(c) for c in classes]
    chars += [secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


async def _admin_mfa_policies(policies: Any) -> list[ConditionalAccessPolicy]:
    """Policies that grant with MFA and include every admin role template id (not excluded)."""
    page = await _read(policies.get())
    matching = []
    for policy in page.value or []:
        users = policy.conditions.users if policy.conditions else None
        controls = policy.grant_controls.built_in_controls if policy.grant_controls else None
        if users is None or ConditionalAccessGrantControl.Mfa not in (controls or []):
            continue
        included = {r.casefold() for r in users.include_roles or []}
        excluded = {r.casefold() for r in users.exclude_roles or []}
        if all(r in included and r not in excluded for r in ADMIN_ROLE_TEMPLATE_IDS):
            matching.append(policy)
    return matching


@dataclass(frozen=True)
class _Classify:
    """classify_alert: the alert's status (and classification, determination) as planned."""

    wanted: dict[str, str]

    def holds(self, alert: Any) -> bool:
        return all((alert or {}).get(k) == v for k, v in self.wanted.items())

    def write(self, alert_id: str) -> dict[str, Any]:
        return {"method": "PATCH", "url": _alert_path(alert_id), "body": {**self.wanted, "assignedTo": ASSIGNEE}}

    def already(self, alert_id: str) -> str:
        return f"alert {alert_id} is already {_describe(self.wanted)}"

    def would(self, alert_id: str) -> str:
        return f"set alert {alert_id} to {_describe(self.wanted)}"

    def done(self, alert_id: str) -> str:
        return f"alert {alert_id} set to {_describe(self.wanted)}, assigned to {ASSIGNEE}"

    def missing(self, alert_id: str) -> str:
        return f"alert {alert_id} is not {_describe(self.wanted)} after the update"


@dataclass(frozen=True)
class _Comment:
    """comment_alert: the comment, its last line a marker naming the case and action."""

    text: str
    marker: str

    def holds(self, alert: Any) -> bool:
        return any(self.marker in (c.get("comment") or "") for c in (alert or {}).get("comments") or [])

    def write(self, alert_id: str) -> dict[str, Any]:
        return {"method": "POST", "url": f"{_alert_path(alert_id)}/comments", "body": {
            "@odata.type": "microsoft.graph.security.alertComment", "comment": f"{self.text}\n\n{self.marker}",
        }}

    def already(self, alert_id: str) -> str:
        return f"alert {alert_id} already carries this case's comment"

    def would(self, alert_id: str) -> str:
        return f"add a comment to alert {alert_id} ({len(self.text)} characters)"

    def done(self, alert_id: str) -> str:
        return f"comment added to alert {alert_id}"

    def missing(self, alert_id: str) -> str:
        return f"the comment does not show on alert {alert_id}"


def _alert_change(inp: ActionInput) -> _Classify | _Comment:
    p = inp.action.params
    if isinstance(p, ClassifyParams):
        wanted = {"status": p.status}
        if p.classification:
            wanted["classification"] = p.classification
        if p.determination:
            wanted["determination"] = p.determination
        return _Classify(wanted)
    return _Comment(_params(inp, CommentParams).comment, f"[quell case {inp.case_id} action {inp.action.id}]")


def _alert_path(alert_id: str) -> str:
    return f"/security/alerts_v2/{quote(alert_id, safe='')}"


def _not_ours(alert: Any, alert_id: str, tenant_id: str) -> str | None:
    """Why quell must not write to this alert, or None. It writes only to alerts that Graph
    returns in the case's tenant and that are connector alerts (the policy's title): an alert id
    from a generic payload, or one an attacker signalled into the case, is never written to."""
    if str((alert or {}).get("tenantId") or tenant_id) != tenant_id:
        return f"alert {alert_id} not written: it belongs to another tenant"
    title = str((alert or {}).get("title", ""))
    if title.strip().casefold() != POLICY_TITLE:
        return f"alert {alert_id} not written: '{title[:80]}' is not a connector alert"
    return None


async def _write_alerts(
    http: GraphHttp, run: _Run, tenant_id: str, change: _Classify | _Comment, alert_ids: list[str]
) -> dict[str, ActionOutcome | ApplicationError]:
    """Up to BATCH_LIMIT alerts in three Graph batches: read each (skip one Graph does not know in
    this tenant or that is no connector alert; `already_done` as wanted; a dry run stops here),
    write the rest, read them again and verify. Each alert's outcome, or the error it met."""
    found: dict[str, ActionOutcome | ApplicationError] = {}
    pending: list[str] = []
    read = await http.batch({str(i): {"method": "GET", "url": _alert_path(a)} for i, a in enumerate(alert_ids)})
    for i, alert_id in enumerate(alert_ids):
        answer = read[str(i)]
        failure = answer.failure()
        if failure is not None and failure.type == "GraphHttp404":
            found[alert_id] = run.refused(f"alert {alert_id} not written: Graph does not know it in tenant {tenant_id}")
        elif failure is not None:
            found[alert_id] = failure
        elif refusal := _not_ours(answer.body, alert_id, tenant_id):
            found[alert_id] = run.refused(refusal)
        elif change.holds(answer.body):
            found[alert_id] = run.already(change.already(alert_id))
        elif run.dry:
            found[alert_id] = run.would(change.would(alert_id))
        else:
            pending.append(alert_id)
    if pending:
        written = await http.batch({str(i): change.write(a) for i, a in enumerate(pending)})
        for i, alert_id in enumerate(pending):
            if (failure := written[str(i)].failure()) is not None:
                found[alert_id] = failure
        written_ids = [a for a in pending if a not in found]
        if written_ids:
            again = await http.batch({str(i): {"method": "GET", "url": _alert_path(a)} for i, a in enumerate(written_ids)})
            for i, alert_id in enumerate(written_ids):
                answer = again[str(i)]
                failure = answer.failure()
                if failure is not None:
                    found[alert_id] = failure
                elif change.holds(answer.body):
                    found[alert_id] = run.done(change.done(alert_id))
                else:
                    found[alert_id] = run.not_verified(change.missing(alert_id))
    return {a: found[a] for a in alert_ids}


def _earlier_outcomes(info: activity.Info) -> list[AlertOutcome]:
    """The outcomes an earlier attempt of this batch settled (its last heartbeat)."""
    if not info.heartbeat_details:
        return []
    return AlertWriteBackResult.model_validate(info.heartbeat_details[0]).outcomes


def _last_attempt(info: activity.Info) -> bool:
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts


def _normal(value: Any) -> Any:
    """Compare connector values as Exchange does: lists as sets, strings and booleans loosely."""
    if isinstance(value, list | tuple):
        return sorted(str(v).strip().casefold() for v in value)
    if isinstance(value, str) and value.casefold() in ("true", "false"):
        return value.casefold() == "true"
    if isinstance(value, str):
        return value.strip().casefold()
    return value


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, list) and actual is None:
        return wanted == []
    return _normal(actual) == _normal(wanted)


def _show(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_show(v)}" for k, v in values.items())


BY_KIND: dict[ActionKind, Callable[[RemediationActivities, ActionInput], Awaitable[ActionOutcome]]] = {
    "disable_connector": RemediationActivities.disable_connector,
    "remove_connector": RemediationActivities.remove_connector,
    "revert_connector_change": RemediationActivities.revert_connector_change,
    "reset_admin_password": RemediationActivities.reset_admin_password,
    "revoke_sessions": RemediationActivities.revoke_sessions,
    "require_admin_mfa": RemediationActivities.require_admin_mfa,
    "unblock_connector": RemediationActivities.unblock_connector,
    "unblock_sender": RemediationActivities.unblock_sender,
    "classify_alert": RemediationActivities.classify_alert,
    "comment_alert": RemediationActivities.comment_alert,
    "disable_transport_rule": RemediationActivities.disable_transport_rule,
    "remove_mail_forwarding": RemediationActivities.remove_mail_forwarding,
    "remove_mailbox_permission": RemediationActivities.remove_mailbox_permission,
    "remove_role_assignment": RemediationActivities.remove_role_assignment,
}
"""The activity that carries out each kind of action (the workflow runs actions through this)."""
