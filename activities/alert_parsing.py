"""Alert payloads intake accepts, validated into `AlertRef`s.

Shapes: a Microsoft Graph security alert (alerts_v2 resource, as Defender raises it for the
"Suspicious connector activity" policy), a Microsoft Sentinel incident trigger payload,
Defender XDR streaming records (AlertInfo / AlertEvidence) and a small generic schema. A payload
that fits neither is refused with the reason, never guessed at. Every field quell reads is
typed, so a value of the wrong type is a PayloadError like any other, and no reason quotes the
payload (its values, its alert ids, its key names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    connector_domain: str | None = Field(default=None, max_length=253)
    """The alert's "Connector domain" (seed 001 copies it with the IP address)."""
    ip: str | None = None
    severity: Literal["informational", "low", "medium", "high", "unknown"] = "unknown"


def public_errors(errors: Sequence[Mapping[str, Any]], limit: int = 5) -> list[dict[str, Any]]:
    """Validation errors as a caller may see them: where (the schema's path) and why, without
    the input, its context, or the name of a key the schema does not have."""
    shown = []
    for error in errors[:limit]:
        loc = list(error["loc"])
        if error["type"] == "extra_forbidden":
            loc = loc[:-1]
        shown.append({"loc": loc, "msg": error["msg"], "type": error["type"]})
    return shown


def _errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in public_errors(error.errors(include_input=False, include_url=False))
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
    if not alert.connector and not alert.ip and not alert.connector_domain:
        raise PayloadError("a generic alert needs 'connector' or 'ip' (or 'connector_domain') to find the connector by")
    return AlertRef(
        alert_id=alert.alert_id,
        tenant_id=alert.tenant,
        severity=alert.severity,
        ip_addresses=[alert.ip] if alert.ip else [],
        connector_hint=alert.connector,
        connector_domain=alert.connector_domain,
        source="generic",
    )


class SentinelEntity(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str
    properties: dict[str, Any] = {}


class SentinelIp(BaseModel):
    model_config = ConfigDict(extra="allow")

    address: str | None = None


class SentinelMailMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    networkMessageId: str | None = None
    senderIP: str | None = None
    p1Sender: str | None = None
    p2Sender: str | None = None
    recipient: str | None = None


class SentinelAlertProperties(BaseModel):
    model_config = ConfigDict(extra="allow")

    alertDisplayName: str
    providerAlertId: str | None = None
    systemAlertId: str | None = None
    severity: str = "unknown"
    timeGenerated: datetime | None = None


class SentinelAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    properties: SentinelAlertProperties


class SentinelIncidentProperties(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str
    incidentNumber: int | None = None
    alerts: list[SentinelAlert] = []
    relatedEntities: list[SentinelEntity] = []


class SentinelIncident(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    properties: SentinelIncidentProperties


def from_sentinel_incident(body: dict[str, Any], tenant_id: str | None) -> list[AlertRef]:
    """A Microsoft Sentinel incident trigger (automation rule → playbook): `{"object": incident, ...}`.

    Every "Suspicious connector activity" alert of the incident becomes one AlertRef, keyed by
    its Defender alert id (`providerAlertId`) so the verdict can be written back to it; the
    incident's Ip and MailMessage entities are the evidence.
    """
    try:
        incident = SentinelIncident.model_validate(body.get("object", body))
    except ValidationError as invalid:
        raise PayloadError(f"not a Sentinel incident: {_errors(invalid)}") from None
    if not tenant_id:
        raise PayloadError("a Sentinel incident needs the tenant (query parameter 'tenant')")
    entities = incident.properties.relatedEntities
    try:
        addresses = [SentinelIp.model_validate(e.properties) for e in entities if e.kind == "Ip"]
        mail = [SentinelMailMessage.model_validate(e.properties) for e in entities if e.kind == "MailMessage"]
    except ValidationError as invalid:
        raise PayloadError(f"not a Sentinel incident: relatedEntities: {_errors(invalid)}") from None
    ips = [a.address for a in addresses if a.address]
    messages = [
        AnalyzedMessage(
            network_message_id=m.networkMessageId,
            sender_ip=m.senderIP,
            p1_sender=m.p1Sender,
            p2_sender=m.p2Sender,
            recipient=m.recipient,
        )
        for m in mail
        if m.networkMessageId
    ]
    alerts = [
        a.properties
        for a in incident.properties.alerts
        if a.properties.alertDisplayName.strip().casefold() == POLICY_TITLE
    ]
    if not alerts:
        raise PayloadError("the incident holds no 'Suspicious connector activity' alert")
    if not ips and not messages:
        raise PayloadError("the incident carries no Ip or MailMessage entity to find the connector by")
    return [
        AlertRef(
            alert_id=a.providerAlertId or a.systemAlertId or incident.name,
            tenant_id=tenant_id,
            title=a.alertDisplayName,
            severity=a.severity.lower(),
            created=a.timeGenerated,
            ip_addresses=ips,
            messages=messages,
            source="sentinel",
        )
        for a in alerts
    ]


class StreamProperties(BaseModel):
    """The AlertInfo / AlertEvidence columns quell reads; others are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    AlertId: str = Field(min_length=1, max_length=200)
    Title: str | None = None
    Severity: str = "unknown"
    EntityType: str | None = None
    RemoteIP: str | None = None
    NetworkMessageId: str | None = None


class StreamRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    tenantId: str | None = None
    category: str = ""
    properties: StreamProperties


class StreamRecords(BaseModel):
    model_config = ConfigDict(extra="allow")

    records: list[StreamRecord]


def from_defender_stream(body: dict[str, Any], tenant_id: str | None) -> list[AlertRef]:
    """Defender XDR streaming API records (Event Hub / webhook relay): AlertInfo + AlertEvidence.

    `{"records": [{"tenantId", "category": "AdvancedHunting-AlertInfo" | "AdvancedHunting-AlertEvidence",
    "properties": {...}}]}`; records of one AlertId are joined into one AlertRef.
    """
    try:
        records = StreamRecords.model_validate(body).records
    except ValidationError as invalid:
        raise PayloadError(f"not Defender streaming records: {_errors(invalid)}") from None
    titles: dict[str, StreamProperties] = {}
    ips: dict[str, list[str]] = {}
    messages: dict[str, list[AnalyzedMessage]] = {}
    tenants: dict[str, str] = {}
    for record in records:
        props = record.properties
        alert_id = props.AlertId
        tenants[alert_id] = record.tenantId or tenant_id or ""
        if record.category.endswith("AlertInfo"):
            titles[alert_id] = props
        elif record.category.endswith("AlertEvidence"):
            if props.EntityType == "Ip" and props.RemoteIP:
                ips.setdefault(alert_id, []).append(props.RemoteIP)
            if props.EntityType == "MailMessage" and props.NetworkMessageId:
                messages.setdefault(alert_id, []).append(AnalyzedMessage(network_message_id=props.NetworkMessageId))
    found = []
    for alert_id, info in titles.items():
        if (info.Title or "").strip().casefold() != POLICY_TITLE:
            continue
        if not tenants[alert_id]:
            raise PayloadError("a connector alert's records name no tenantId")
        if not ips.get(alert_id) and not messages.get(alert_id):
            raise PayloadError("a connector alert has no Ip or MailMessage evidence record")
        found.append(
            AlertRef(
                alert_id=alert_id,
                tenant_id=tenants[alert_id],
                severity=info.Severity.lower(),
                ip_addresses=ips.get(alert_id, []),
                messages=messages.get(alert_id, []),
                source="defender-stream",
            )
        )
    if not found:
        raise PayloadError("the records hold no 'Suspicious connector activity' AlertInfo")
    return found


def parse_alerts(body: Any, tenant_id: str | None = None) -> list[AlertRef]:
    """Recognise the shape by its keys and return every connector alert it carries."""
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")
    if "alert_id" in body:
        return [from_generic(body)]
    if "records" in body:
        return from_defender_stream(body, tenant_id)
    kind = body.get("type")
    if "object" in body or (isinstance(kind, str) and kind.endswith("/Incidents")):
        return from_sentinel_incident(body, tenant_id)
    if "id" in body and "title" in body:
        return [from_graph_alert(body, tenant_id, source="webhook")]
    raise PayloadError(
        "unrecognised alert shape: expected a Graph security alert, a Sentinel incident, "
        "Defender streaming records or {tenant, alert_id, ...}"
    )

