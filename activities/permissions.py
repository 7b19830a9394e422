"""What quell needs from each tenant's app registration: one manifest, per evidence source and per
action kind, of Microsoft Graph application permissions, Exchange Online app roles and Entra
directory roles for the app's service principal.

`required(settings)` derives the grants a deployment needs from the actions it enables (an action
with policy `never`, or every action in `dry_run`, needs its reads only); `quell doctor` checks a
tenant against it; `render_markdown()` is docs/permissions.md (a test fails when they differ:
regenerate with `quell doctor --render-permissions > docs/permissions.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.settings import Settings
from workflows.types import ActionKind

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
"""Microsoft Graph's application id (the same in every tenant)."""
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
"""Office 365 Exchange Online's application id."""
DIRECTORY_ROLE_TEMPLATES = {
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
}
"""Role template ids (the same in every tenant) of the directory roles quell's app may need."""

GrantKind = Literal["graph", "exchange", "directory_role"]
KIND_NAMES: dict[GrantKind, str] = {
    "graph": "Microsoft Graph application permission",
    "exchange": "Office 365 Exchange Online application permission",
    "directory_role": "Entra directory role of the app",
}


@dataclass(frozen=True, order=True)
class Grant:
    kind: GrantKind
    name: str

    @property
    def resource_app_id(self) -> str | None:
        return {"graph": GRAPH_APP_ID, "exchange": EXCHANGE_APP_ID}.get(self.kind)


def graph(name: str) -> Grant:
    return Grant("graph", name)


EXCHANGE = (Grant("exchange", "Exchange.ManageAsApp"), Grant("directory_role", "Exchange Administrator"))
"""Every Exchange cmdlet quell runs: app-only access to Exchange, and an Exchange role through the
Exchange Administrator directory role (scope it with an Exchange management scope if you use them)."""
HUNTING = graph("ThreatHunting.Read.All")
USERS = graph("User.Read.All")
ALERTS_READ = graph("SecurityAlert.Read.All")
ALERTS_WRITE = graph("SecurityAlert.ReadWrite.All")
ROLES_READ = graph("RoleManagement.Read.Directory")
ROLES_WRITE = graph("RoleManagement.ReadWrite.Directory")
IMPLIED_BY = {ALERTS_READ: ALERTS_WRITE, ROLES_READ: ROLES_WRITE}
"""A grant that another one includes: having the second satisfies the first."""


@dataclass(frozen=True)
class Need:
    what: str
    api: str
    read: tuple[Grant, ...]
    write: tuple[Grant, ...] = ()
    """Needed only where the action may change the tenant: `enforce` mode and a policy other than `never`."""


SOURCES: dict[str, Need] = {
    "alert_poller": Need("list new alerts (the poller schedule)", "Graph `GET /security/alerts_v2`", (ALERTS_READ,)),
    "resolve_connector": Need(
        "find the alerted connector", "EXO `Get-InboundConnector`, `Get-OutboundConnector`; hunting `EmailEvents`",
        (*EXCHANGE, HUNTING)),
    "audit_log": Need(
        "one audit query per case: every connector's changes (and the values a revert restores), deleted "
        "connectors, the suspect admins' footprint (Exchange admin and directory records)",
        "Graph `POST /security/auditLog/queries` → `/records`; fallback EXO `Search-UnifiedAuditLog` (session "
        "paging), then hunting `CloudAppEvents` (with the connector actors' `IdentityLogonEvents`) and Graph "
        "`GET /users/{id}`",
        (graph("AuditLogsQuery-Exchange.Read.All"), graph("AuditLogsQuery-Entra.Read.All"), *EXCHANGE, HUNTING, USERS)),
    "directory_accounts": Need("which audit actors are directory users (only they can be suspect)",
                               "Graph `GET /users/{upn}`", (USERS,)),
    "mail_stats": Need("mail through the connector, and the tenant's compromised sender accounts (one query)",
                       "hunting `EmailEvents`, `EmailAttachmentInfo`, `UrlClickEvents`; EXO `Get-MessageTraceV2`, "
                       "`Get-AcceptedDomain` (shared with `accepted_domains`)",
                       (*EXCHANGE, HUNTING)),
    "restricted_entities": Need("restricted connectors and senders", "EXO `Get-BlockedConnector`, "
                                "`Get-BlockedSenderAddress`", EXCHANGE),
    "accepted_domains": Need("accepted domains (cases begun before `parallel-evidence`; since then `mail_stats`)",
                             "EXO `Get-AcceptedDomain`", EXCHANGE),
    "admin_sign_ins": Need("the acting admins' ids and sign-ins", "Graph `GET /users/{upn}`; hunting "
                           "`IdentityLogonEvents`", (USERS, HUNTING)),
    "compromised_senders": Need("compromised sender accounts (cases begun before `fewer-tenant-calls`; since "
                                "then `mail_stats`)", "hunting `EmailEvents`", (HUNTING,)),
}
"""Evidence every case reads (and the poller), whatever actions are enabled."""

ACTIONS: dict[ActionKind, Need] = {
    "classify_alert": Need("set the alert's status and classification",
                           "Graph `GET/PATCH /security/alerts_v2/{id}` (in JSON batches, `POST /$batch`)",
                           (ALERTS_READ,), (ALERTS_WRITE,)),
    "comment_alert": Need("comment on the alert", "Graph `POST /security/alerts_v2/{id}/comments` (in JSON batches)",
                          (ALERTS_READ,), (ALERTS_WRITE,)),
    "disable_connector": Need("disable the connector", "EXO `Set-InboundConnector`, `Set-OutboundConnector`",
                              EXCHANGE),
    "remove_connector": Need("remove the connector", "EXO `Remove-InboundConnector`, `Remove-OutboundConnector`",
                             EXCHANGE),
    "revert_connector_change": Need("restore the connector's earlier values", "EXO `Set-InboundConnector`, "
                                    "`Set-OutboundConnector`", EXCHANGE),
    "reset_admin_password": Need(
        "reset the acting admin's password (change at next sign-in)", "Graph `PATCH /users/{id}` (`passwordProfile`)",
        (USERS,), (graph("User-PasswordProfile.ReadWrite.All"),
                   Grant("directory_role", "Privileged Authentication Administrator"))),
    "revoke_sessions": Need("revoke the acting admin's sessions", "Graph `POST /users/{id}/revokeSignInSessions`",
                            (USERS,), (graph("User.RevokeSessions.All"),)),
    "require_admin_mfa": Need("require MFA for admin roles (a conditional access policy)",
                              "Graph `GET/POST /identity/conditionalAccess/policies`",
                              (graph("Policy.Read.All"),), (graph("Policy.ReadWrite.ConditionalAccess"),)),
    "unblock_connector": Need("take the connector off the restricted list", "EXO `Remove-BlockedConnector`",
                              EXCHANGE),
    "unblock_sender": Need("release a restricted sender", "EXO `Remove-BlockedSenderAddress`", EXCHANGE),
    "disable_transport_rule": Need("disable the attacker's mail flow rule", "EXO `Get-TransportRule`, "
                                   "`Disable-TransportRule`", EXCHANGE),
    "remove_mail_forwarding": Need(
        "clear a mailbox's forwarding and disable the forwarding inbox rules the attacker made",
        "EXO `Get-Mailbox`, `Set-Mailbox`, `Get-InboxRule`, `Disable-InboxRule`", EXCHANGE),
    "remove_mailbox_permission": Need("remove the delegate grants the attacker added",
                                      "EXO `Get-MailboxPermission`, `Remove-MailboxPermission`", EXCHANGE),
    "remove_role_assignment": Need(
        "remove the directory roles the attacker granted",
        "Graph `GET/DELETE /roleManagement/directory/roleAssignments`",
        (ROLES_READ,), (ROLES_WRITE, Grant("directory_role", "Privileged Role Administrator"))),
}

DOCTOR = graph("Application.Read.All")
"""Optional, for `quell doctor` alone: read the app's own grants (app role assignments, directory
roles). Without it, doctor judges Graph and Exchange permissions from the tokens' `roles` claims and
cannot verify directory roles."""

def required(settings: Settings) -> dict[Grant, list[str]]:
    """Each grant the configured deployment needs, with what needs it ("evidence mail_stats",
    "action revoke_sessions")."""
    needs: dict[Grant, list[str]] = {}

    def add(grants: tuple[Grant, ...], who: str) -> None:
        for grant in grants:
            needs.setdefault(grant, []).append(who)

    for source, need in SOURCES.items():
        add(need.read, f"evidence {source}")
    for kind, need in ACTIONS.items():
        if settings.mode == "dry_run":
            add(need.read, f"action {kind} (dry run)")
        elif settings.approval.for_action(kind) != "never":
            add(need.read + need.write, f"action {kind}")
    return dict(sorted(needs.items()))


# --------------------------------------------------------------------------- docs/permissions.md


def _grants(grants: tuple[Grant, ...]) -> str:
    return ", ".join(f"`{g.name}`" if g.kind != "directory_role" else f"**{g.name}** role" for g in grants) or "-"


def render_markdown() -> str:
    lines = [
        "# Permissions (least privilege)",
        "",
        "<!-- Rendered from activities/permissions.py: `quell doctor --render-permissions > docs/permissions.md`."
        " A test fails when this file and the manifest differ. -->",
        "",
        "quell runs as one Entra ID app registration per tenant, with application permissions only (client",
        "credentials; a certificate is preferred over a client secret). `quell doctor` checks each configured",
        "tenant's grants against what its configuration needs and prints the grant to add for each gap.",
        "",
        "Evidence is read for every case. An action needs its *write* grants only where it may change the",
        "tenant: in `enforce` mode with an approval policy other than `never`; in `dry_run` every action",
        "reads only.",
        "",
        "## What quell does and what it needs",
        "",
        "| | what quell does | API | read | write |",
        "|---|---|---|---|---|",
    ]
    for source, need in SOURCES.items():
        lines.append(f"| evidence `{source}` | {need.what} | {need.api} | {_grants(need.read)} | - |")
    for kind, need in ACTIONS.items():
        lines.append(f"| action `{kind}` | {need.what} | {need.api} | {_grants(need.read)} | {_grants(need.write)} |")
    every: dict[Grant, list[str]] = {}
    for name, need in [*((f"evidence `{s}`", n) for s, n in SOURCES.items()),
                       *((f"`{k}`", n) for k, n in ACTIONS.items())]:
        for grant in need.read + need.write:
            if name not in every.setdefault(grant, []):
                every[grant].append(name)
    lines += ["", "## By grant", "", "| grant | of | needed by |", "|---|---|---|"]
    for grant, users in sorted(every.items()):
        lines.append(f"| `{grant.name}` | {KIND_NAMES[grant.kind]} | {', '.join(users)} |")
    lines.append(f"| `{DOCTOR.name}` | {KIND_NAMES[DOCTOR.kind]} | optional: `quell doctor` reads the app's own "
                 "grants with it |")
    lines += [
        "",
        "Notes:",
        f"- `{ALERTS_WRITE.name}` includes `{ALERTS_READ.name}`: grant one of them.",
        "- Exchange: `Exchange.ManageAsApp` lets the app call Exchange Online at all; the Exchange Administrator",
        "  directory role gives it the cmdlets. It is the broadest grant: scope it with an Exchange RBAC management",
        "  scope if your tenant uses them.",
        "- Privileged Authentication Administrator is what resetting *another admin's* password needs;",
        "  Privileged Role Administrator is what removing a privileged directory role needs.",
        f"- `{ROLES_WRITE.name}` includes `{ROLES_READ.name}`: grant one of them.",
        "- Exchange RBAC: the Exchange Administrator role includes the Transport Rules, Mail Recipients and",
        "  View-Only Audit Logs roles that the mail flow rule, mailbox and audit cmdlets need.",
        "- The intake service needs no Microsoft permission; it only talks to Temporal.",
        "- Secrets (client secret, intake tokens, chat webhook URLs, Temporal API key, codec keys) are read from",
        "  settings as `SecretStr`, never logged and never passed into workflow input or history.",
        "",
    ]
    return "\n".join(lines)
