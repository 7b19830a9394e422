"""Alert payloads intake accepts, validated into one `AlertRef`.

Shapes: a Microsoft Graph security alert (alerts_v2 resource, as Defender raises it for the
"Suspicious connector activity" policy) and a small generic schema for other tools. A payload
that fits neither is refused with the reason, never guessed at.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workflows.types import AlertRef, AnalyzedMessage

POLICY_TITLE = "suspicious connector activity"
IP_EVIDENCE = "#microsoft.graph.security.ipEvidence"
MESSAGE_EVIDENCE = "#microsoft.graph.security.analyzedMessageEvidence"


class PayloadError(ValueError):
    """The payload is not an alert quell can act on; the message says why (never echoes it)."""


class EmailAddress(BaseModel):
    emailAddress: str | None = None
    domainName: str | None = None


class GraphEvidence(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    odata_type: str = Field(alias="@odata.type")
    ipAddress: str | None = None
    networkMessageId: str | None = None
    senderIp: str | None = None
    p1Sender: EmailAddress | None = None
    p2Sender: EmailAddress | None = None
    recipientEmailAddress: str | None = None


class GraphAlert(BaseModel):
    """The alerts_v2 properties quell reads; others are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    title: str
    tenantId: str | None = None
    severity: str = "unknown"
    createdDateTime: datetime | None = None
    evidence: list[GraphEvidence] = []


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    alert_id: str = Field(min_length=1, max_length=200)
    connector: str | None = Field(default=None, max_length=256)
    ip: str | None = None
    severity: Literal["informational", "low", "medium", "high", "unknown"] = "unknown"


def _errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:5]
    )


def from_graph_alert(body: dict[str, Any], tenant_id: str | None, source: str) -> AlertRef:
    try:
        alert = GraphAlert.model_validate(body)
    except ValidationError as invalid:
        raise PayloadError(f"not a Graph security alert: {_errors(invalid)}") from None
    if alert.title.strip().casefold() != POLICY_TITLE:
        raise PayloadError("alert title is not 'Suspicious connector activity'")
    tenant = alert.tenantId or tenant_id
    if not tenant:
        raise PayloadError("the alert names no tenantId")
    ips = [e.ipAddress for e in alert.evidence if e.odata_type == IP_EVIDENCE and e.ipAddress]
    messages = [
        AnalyzedMessage(
            network_message_id=e.networkMessageId,
            sender_ip=e.senderIp,
            p1_sender=e.p1Sender.emailAddress if e.p1Sender else None,
            p2_sender=e.p2Sender.emailAddress if e.p2Sender else None,
            recipient=e.recipientEmailAddress,
        )
        for e in alert.evidence
        if e.odata_type == MESSAGE_EVIDENCE and e.networkMessageId
    ]
    if not ips and not messages:
        raise PayloadError("the alert carries no ipEvidence or analyzedMessageEvidence to find the connector by")
    return AlertRef(
        alert_id=alert.id,
        tenant_id=tenant,
        title=alert.title,
        severity=alert.severity,
        created=alert.createdDateTime,
        ip_addresses=ips,
        messages=messages,
        source=source,
    )


def from_generic(body: dict[str, Any]) -> AlertRef:
    try:
        alert = GenericAlert.model_validate(body)
    except ValidationError as invalid:
        raise PayloadError(f"not a generic alert: {_errors(invalid)}") from None
    if not alert.connector and not alert.ip:
        raise PayloadError("a generic alert needs 'connector' or 'ip' to find the connector by")
    return AlertRef(
        alert_id=alert.alert_id,
        tenant_id=alert.tenant,
        severity=alert.severity,
        ip_addresses=[alert.ip] if alert.ip else [],
        connector_hint=alert.connector,
        source="generic",
    )


def parse_alert(body: Any, tenant_id: str | None = None) -> AlertRef:
    """Recognise the shape by its keys: Graph alerts have `id` and `title`, generic ones `alert_id`."""
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")
    if "alert_id" in body:
        return from_generic(body)
    if "id" in body and "title" in body:
        return from_graph_alert(body, tenant_id, source="webhook")
    raise PayloadError("unrecognised alert shape: expected a Graph security alert or {tenant, alert_id, ...}")


def case_key(alert: AlertRef) -> str:
    """The part of the case id after the tenant: the connector when the alert names it."""
    if alert.connector_hint:
        return "connector/" + re.sub(r"[^a-z0-9.@_-]+", "-", alert.connector_hint.casefold()).strip("-")
    return f"alert/{alert.alert_id}"


def case_id(alert: AlertRef) -> str:
    return f"connector-case/{alert.tenant_id}/{case_key(alert)}"
