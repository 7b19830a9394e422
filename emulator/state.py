"""The emulated tenant's mutable state, built from a scenario, and the log of every API call.

Handlers change a `TenantData`: the live one, or a throw-away copy when a fault says a write is
to be answered but ignored. `snapshot()` gives the tenant in the shape of the scenario's
`tenant` block (every section present) plus the alerts; it never holds a password or its hash.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from emulator.faults import api_matches
from emulator.quotas import Throttling
from emulator.scenario import TENANT_SECTIONS, Scenario
from emulator.timestamps import format_datetime

ConnectorKind = Literal["inbound", "outbound"]

INBOUND_DEFAULTS: dict[str, Any] = {
    "Enabled": True, "ConnectorType": "Partner", "ConnectorSource": "Default", "Comment": None,
    "SenderIPAddresses": [], "SenderDomains": [], "AssociatedAcceptedDomains": [], "RequireTls": False,
    "RestrictDomainsToIPAddresses": False, "RestrictDomainsToCertificate": False,
    "CloudServicesMailEnabled": False, "TreatMessagesAsInternal": False, "TlsSenderCertificateName": None,
    "TrustedOrganizations": [], "EFSkipLastIP": False, "EFSkipIPs": [], "EFUsers": [], "EFTestMode": False,
    "ScanAndDropRecipients": [],
}
OUTBOUND_DEFAULTS: dict[str, Any] = {
    "Enabled": True, "ConnectorType": "Partner", "ConnectorSource": "Default", "Comment": None,
    "UseMXRecord": True, "RecipientDomains": [], "SmartHosts": [], "TlsDomain": None, "TlsSettings": None,
    "IsTransportRuleScoped": False, "RouteAllMessagesViaOnPremises": False, "CloudServicesMailEnabled": False,
    "AllAcceptedDomains": False, "SenderRewritingEnabled": False, "TestMode": False,
    "ValidationRecipients": [], "IsValidated": False, "LastValidationTimestamp": None,
}
DEFAULTS: dict[ConnectorKind, dict[str, Any]] = {"inbound": INBOUND_DEFAULTS, "outbound": OUTBOUND_DEFAULTS}
_GUIDS = uuid.UUID("6b1d3a52-52b1-4c57-9d0e-1c2f8a7e4b10")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TenantData:
    users: list[dict[str, Any]]
    inbound_connectors: list[dict[str, Any]]
    outbound_connectors: list[dict[str, Any]]
    blocked_connectors: list[dict[str, Any]]
    blocked_senders: list[dict[str, Any]]
    accepted_domains: list[str]
    conditional_access_policies: list[dict[str, Any]]
    transport_rules: list[dict[str, Any]]
    mailboxes: list[dict[str, Any]]
    alerts: dict[str, dict[str, Any]]
    audit_log: list[dict[str, Any]]
    password_hashes: dict[str, str] = field(default_factory=dict)
    """User id -> salted hash of the last password set through Graph (never the password)."""
    audit_queries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def connectors(self, kind: ConnectorKind) -> list[dict[str, Any]]:
        return self.inbound_connectors if kind == "inbound" else self.outbound_connectors

    def find_connector(self, kind: ConnectorKind, identity: str) -> dict[str, Any] | None:
        """By Name (case-insensitively) or Guid, as Exchange resolves -Identity."""
        wanted = identity.strip().casefold()
        return next(
            (c for c in self.connectors(kind) if wanted in (str(c["Name"]).casefold(), str(c["Guid"]).casefold())),
            None,
        )

    def find_transport_rule(self, identity: str) -> dict[str, Any] | None:
        """By Name (case-insensitively) or Guid, as Exchange resolves -Identity."""
        wanted = identity.strip().casefold()
        return next(
            (r for r in self.transport_rules if wanted in (str(r["Name"]).casefold(), str(r["Guid"]).casefold())),
            None,
        )

    def find_mailbox(self, identity: str) -> dict[str, Any] | None:
        """By UPN, alias, name, e-mail address or Guid (case-insensitively), as Exchange resolves -Identity."""
        wanted = identity.strip().casefold().removeprefix("smtp:")
        return next((m for m in self.mailboxes if wanted in _mailbox_names(m)), None)

    def find_user(self, key: str) -> dict[str, Any] | None:
        """By object id or userPrincipalName (case-insensitively), as Graph resolves /users/{key}."""
        wanted = key.casefold()
        return next(
            (u for u in self.users if wanted in (str(u["id"]).casefold(), str(u["userPrincipalName"]).casefold())),
            None,
        )

    def append_audit(self, operation: str, object_id: str, parameters: dict[str, Any], actor: str, client_ip: str) -> None:
        """An ExchangeAdmin record as the unified audit log writes it for a cmdlet run."""
        now = format_datetime(utcnow())
        self.audit_log.append({
            "CreationDate": now,
            "Operation": operation,
            "UserIds": actor,
            "RecordType": "ExchangeAdmin",
            "AuditData": {
                "CreationTime": now,
                "Id": str(uuid.uuid4()),
                "Operation": operation,
                "RecordType": 1,
                "ResultStatus": "True",
                "UserId": actor,
                "UserType": 5,
                "Workload": "Exchange",
                "ClientIP": client_ip,
                "ObjectId": object_id,
                "AppId": actor,
                "Parameters": [{"Name": name, "Value": audit_value(value)} for name, value in parameters.items()],
            },
        })


def audit_value(value: Any) -> str:
    """A parameter value as Exchange logs it: lists joined with `,`, booleans True/False."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ",".join(audit_value(v) for v in value)
    return "" if value is None else str(value)


@dataclass
class AuditSession:
    """A Search-UnifiedAuditLog session (`SessionId`): what its search matched, and its pages so far."""

    records: list[dict[str, Any]]
    """The records the session serves, in the order it serves them (ResultIndex 1, 2, ...)."""
    served: int = 0
    answer: list[dict[str, Any]] = field(default_factory=list)
    """The last call's records: the InvokeCommand pages of that call (`$skiptoken`) read them again."""


class TenantState:
    def __init__(self, scenario: Scenario, throttling: Throttling) -> None:
        tenant = scenario.tenant
        now = format_datetime(utcnow())
        self.tenant_id = tenant.id
        self.calls: list[dict[str, Any]] = []
        self.throttling = throttling
        """The tenant's quotas, and the 429s and early retries per family (emulator/quotas.py)."""
        self.audit_sessions: dict[str, AuditSession] = {}
        self.data = TenantData(
            users=[u.model_dump() for u in tenant.users],
            inbound_connectors=[_connector(c, "inbound", tenant.id, now) for c in tenant.inbound_connectors],
            outbound_connectors=[_connector(c, "outbound", tenant.id, now) for c in tenant.outbound_connectors],
            blocked_connectors=copy.deepcopy(tenant.blocked_connectors),
            blocked_senders=copy.deepcopy(tenant.blocked_senders),
            accepted_domains=list(tenant.accepted_domains),
            conditional_access_policies=copy.deepcopy(tenant.conditional_access_policies),
            transport_rules=[_transport_rule(r, i, tenant.id, now) for i, r in enumerate(tenant.transport_rules)],
            mailboxes=[_mailbox(m.model_dump(), tenant.id, scenario) for m in tenant.mailboxes],
            alerts={scenario.alert["id"]: _alert(scenario.alert, tenant.id, now)},
            audit_log=[r.model_dump(mode="json") for r in scenario.audit_log],
        )

    def add_alert(self, given: dict[str, Any]) -> str:
        """Another alert in the tenant, completed as the scenario's alert is; its id."""
        alert_id = given["id"]
        if not isinstance(alert_id, str) or not alert_id:
            raise ValueError("an alert needs a non-empty string id")
        self.data.alerts[alert_id] = _alert(given, self.tenant_id, format_datetime(utcnow()))
        return alert_id

    def writable(self, discard: bool) -> TenantData:
        """The data a write changes: the live tenant, or a copy thrown away after the call."""
        return copy.deepcopy(self.data) if discard else self.data

    def record_call(self, api: str, status: int, detail: dict[str, Any]) -> None:
        self.calls.append({"api": api, "status": status, "at": format_datetime(utcnow()), **detail})

    def calls_matching(self, pattern: str) -> list[dict[str, Any]]:
        """Logged calls a fault-style pattern (`exo:Set-InboundConnector`, `graph:POST /users/{x}/...`) names."""
        return [c for c in self.calls if api_matches(pattern, c["api"])]

    def snapshot(self) -> dict[str, Any]:
        data = self.data
        tenant: dict[str, Any] = {"id": self.tenant_id, "accepted_domains": list(data.accepted_domains)}
        for section in TENANT_SECTIONS:
            tenant[section] = copy.deepcopy(getattr(data, section))
        tenant["users"] = [_public_user(u) for u in data.users]
        return {"tenant": tenant, "alerts": copy.deepcopy(data.alerts)}


def _connector(given: dict[str, Any], kind: ConnectorKind, tenant_id: str, now: str) -> dict[str, Any]:
    connector = {**copy.deepcopy(DEFAULTS[kind]), **copy.deepcopy(given)}
    connector.setdefault("Guid", str(uuid.uuid5(_GUIDS, f"{tenant_id}/{kind}/{given['Name']}")))
    connector.setdefault("WhenCreated", now)
    connector.setdefault("WhenChanged", connector["WhenCreated"])
    return connector


def _transport_rule(given: dict[str, Any], index: int, tenant_id: str, now: str) -> dict[str, Any]:
    rule = {"State": "Enabled", "Mode": "Enforce", "Priority": index, **copy.deepcopy(given)}
    rule.setdefault("Guid", str(uuid.uuid5(_GUIDS, f"{tenant_id}/transport-rule/{given['Name']}")))
    rule.setdefault("WhenChanged", now)
    return rule


def _mailbox(given: dict[str, Any], tenant_id: str, scenario: Scenario) -> dict[str, Any]:
    """A mailbox with the Get-Mailbox properties the scenario leaves out, its rules and grants completed."""
    upn = given["UserPrincipalName"]
    alias = upn.split("@")[0]
    user = next((u for u in scenario.tenant.users if u.userPrincipalName.casefold() == upn.casefold()), None)
    mailbox = {
        "Name": alias, "Alias": alias, "DisplayName": user.displayName if user else alias,
        "PrimarySmtpAddress": upn, "RecipientTypeDetails": "UserMailbox",
        "Guid": str(uuid.uuid5(_GUIDS, f"{tenant_id}/mailbox/{upn.casefold()}")),
        "ExternalDirectoryObjectId": user.id if user else None,
        **copy.deepcopy(given),
    }
    mailbox["inbox_rules"] = [
        {"Identity": f"{upn}\\{rule['Name']}", "Enabled": True, "Priority": i + 1,
         "RuleIdentity": str(uuid.uuid5(_GUIDS, f"{upn.casefold()}/{rule['Name']}").int % 10**19),
         "MailboxOwnerId": mailbox["Name"], "ForwardTo": [], "RedirectTo": [], "ForwardAsAttachmentTo": [], **rule}
        for i, rule in enumerate(mailbox["inbox_rules"])
    ]
    return mailbox


def _mailbox_names(mailbox: dict[str, Any]) -> set[str]:
    names = [mailbox["UserPrincipalName"], mailbox["Alias"], mailbox["Name"], mailbox["PrimarySmtpAddress"],
             mailbox["Guid"], *(str(a).removeprefix("smtp:").removeprefix("SMTP:") for a in mailbox.get("EmailAddresses", []))]
    return {str(n).casefold() for n in names if n}


def _alert(given: dict[str, Any], tenant_id: str, now: str) -> dict[str, Any]:
    alert = copy.deepcopy(given)
    for key, value in {
        "status": "new", "classification": "unknown", "determination": "unknown", "assignedTo": None,
        "comments": [], "tenantId": tenant_id, "createdDateTime": now, "evidence": [],
    }.items():
        alert.setdefault(key, value)
    alert.setdefault("lastUpdateDateTime", alert["createdDateTime"])
    return alert


def _public_user(user: dict[str, Any]) -> dict[str, Any]:
    public = copy.deepcopy(user)
    profile = public.get("passwordProfile")
    if isinstance(profile, dict):
        profile.pop("password", None)
    return public
