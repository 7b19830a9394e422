"""The storm's tenants, generated: scenario documents (docs/scenarios.md) for `quell emulator`, and
the Defender alerts that name their connectors.

Each tenant has `connectors` on-premises relay connectors, each with its own sender IP in the
benchmarking range (198.18.0.0/15, RFC 2544), a week of ordinary relay mail, a sender-IP change two
days ago by the tenant's connector admin under an approved change, and a Defender restriction. An
alert names a connector by its IP evidence, so every connector is a case of its own. Every evidence
source answers: the connector's configuration, one audit query (with the admin's sign-ins and the
directory lookup its change brings), accepted domains, the restriction, and hunting over the mail.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

AUTHORED_NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
_IDS = uuid.UUID("5f0a6c1e-8d2b-4e7a-9c3f-2b1d0e4a7c55")
TITLE = "Suspicious connector activity"


def _at(delta: timedelta) -> str:
    return (AUTHORED_NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def tenant_id(index: int) -> str:
    return str(uuid.uuid5(_IDS, f"tenant/{index}"))


def connector_name(number: int) -> str:
    return f"Storm Relay {number:02d}"


def connector_ip(index: int, number: int) -> str:
    return f"198.18.{index}.{number + 1}"


def alert(index: int, number: int, alert_id: str, created: datetime) -> dict[str, Any]:
    """The alerts_v2 resource Defender raises for connector `number` of tenant `index`."""
    stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "id": alert_id, "title": TITLE, "severity": "medium", "status": "new", "category": "InitialAccess",
        "serviceSource": "microsoftDefenderForOffice365", "detectionSource": "microsoftDefenderForOffice365",
        "tenantId": tenant_id(index), "createdDateTime": stamp, "lastUpdateDateTime": stamp,
        "evidence": [{"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": connector_ip(index, number)}],
    }


def with_microsoft_quotas(document: dict[str, Any]) -> dict[str, Any]:
    """The tenant with the emulator's `microsoft` quota preset (docs/storms.md, "Microsoft's
    quotas"): past a family's documented limit the emulator answers 429 with Retry-After."""
    return {**document, "quotas": "microsoft"}


QUOTAS = "on (the emulator's `microsoft` preset; quell paces with its `[quotas]` defaults)"


def storm_tenant(index: int, connectors: int) -> dict[str, Any]:
    """Tenant `index` with `connectors` relay connectors, as a scenario document."""
    domain = f"storm{index}.example"
    admin, relay = f"exadmin@{domain}", f"relay@{domain}"
    admin_id, relay_id = (str(uuid.uuid5(_IDS, f"{index}/user/{name}")) for name in ("admin", "relay"))
    names = [connector_name(n) for n in range(connectors)]
    guids = [str(uuid.uuid5(_IDS, f"{index}/connector/{n}")) for n in range(connectors)]
    ips = [connector_ip(index, n) for n in range(connectors)]
    changed = timedelta(days=-2)
    document = {
        "id": f"storm-tenant-{index}",
        "description": f"Storm tenant {index}: {connectors} on-premises relay connectors, each changed under an "
                       "approved change two days ago, each restricted by Defender.",
        "now": _at(timedelta()),
        "organization": {
            "on_premises_ip_ranges": ["198.18.0.0/15"],
            "connector_admins": [admin],
            "partner_domains": ["fabrikam.com"],
            "approved_changes": [
                {"ticket": f"CHG-{index}{n:03d}", "connector": name, "by": admin,
                 "from": _at(changed - timedelta(hours=1)), "to": _at(changed + timedelta(hours=1))}
                for n, name in enumerate(names)
            ],
        },
        "tenant": {
            "id": tenant_id(index),
            "accepted_domains": [domain],
            "users": [
                {"id": admin_id, "userPrincipalName": admin, "displayName": "Exchange Admin",
                 "roles": ["Exchange Administrator"]},
                {"id": relay_id, "userPrincipalName": relay, "displayName": "Relay", "roles": []},
            ],
            "inbound_connectors": [
                {"Guid": guid, "Name": name, "Enabled": True, "ConnectorType": "OnPremises",
                 "ConnectorSource": "AdminUI", "SenderDomains": ["smtp:*;1"], "SenderIPAddresses": [ip],
                 "RestrictDomainsToIPAddresses": True, "CloudServicesMailEnabled": True,
                 "WhenCreated": _at(timedelta(days=-400)), "WhenChanged": _at(changed)}
                for guid, name, ip in zip(guids, names, ips)
            ],
            "blocked_connectors": [
                {"ConnectorId": guid, "ConnectorName": name, "Reason": "Suspicious connector activity",
                 "CreatedDatetime": _at(timedelta(minutes=-20))}
                for guid, name in zip(guids, names)
            ],
        },
        "audit_log": [
            {"CreationDate": _at(changed), "Operation": "Set-InboundConnector", "UserIds": admin,
             "RecordType": "ExchangeAdmin",
             "AuditData": {"ObjectId": name, "ClientIP": "198.18.255.9", "ResultStatus": "True",
                           "Parameters": [{"Name": "Identity", "Value": name},
                                          {"Name": "SenderIPAddresses", "Value": ip}]}}
            for name, ip in zip(names, ips)
        ],
        "tables": {
            "EmailEvents": [
                {"repeat": 84, "start": _at(timedelta(days=-7, minutes=5 + n % 60)), "every": "7200s", "row": {
                    "NetworkMessageId": f"storm{index}-{n}-{{i}}", "SenderFromAddress": relay,
                    "SenderMailFromAddress": relay, "SenderFromDomain": domain, "SenderMailFromDomain": domain,
                    "SenderObjectId": relay_id, "RecipientEmailAddress": "{cycle:orders,ap,invoices}@fabrikam.com",
                    "EmailDirection": "Outbound", "DeliveryAction": "Delivered", "DeliveryLocation": "Inbox",
                    "Connectors": name, "SenderIPv4": ip, "ThreatTypes": ""}}
                for n, (name, ip) in enumerate(zip(names, ips))
            ],
            "IdentityLogonEvents": [
                {"repeat": 7, "start": _at(timedelta(days=-7, hours=-2)), "every": "86400s", "row": {
                    "ActionType": "LogonSuccess", "AccountUpn": admin, "AccountObjectId": admin_id,
                    "Application": "Office 365", "ISP": "Contoso", "CountryCode": "US", "IPAddress": "198.18.255.9"}},
            ],
        },
        "alert": alert(index, 0, f"storm-{index}-scenario", AUTHORED_NOW - timedelta(minutes=15)),
        "mode": "enforce",
    }
    return with_microsoft_quotas(document)
