"""Alert payloads intake accepts, validated into `AlertRef`s.

Shapes: a Microsoft Graph security alert (alerts_v2 resource, as Defender raises it for the
"Suspicious connector activity" policy), a Microsoft Sentinel incident trigger payload,
Defender XDR streaming records (AlertInfo / AlertEvidence) and a small generic schema. A payload
that fits neither is refused with the reason, never guessed at.
"""

from __future__ import annotations

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
    ips = [str(e.properties["address"]) for e in entities if e.kind == "Ip" and e.properties.get("address")]
    messages = [
        AnalyzedMessage(
            network_message_id=str(e.properties["networkMessageId"]),
            sender_ip=e.properties.get("senderIP"),
            p1_sender=e.properties.get("p1Sender"),
            p2_sender=e.properties.get("p2Sender"),
            recipient=e.properties.get("recipient"),
        )
        for e in entities
        if e.kind == "MailMessage" and e.properties.get("networkMessageId")
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


def from_defender_stream(body: dict[str, Any], tenant_id: str | None) -> list[AlertRef]:
    """Defender XDR streaming API records (Event Hub / webhook relay): AlertInfo + AlertEvidence.

    `{"records": [{"tenantId", "category": "AdvancedHunting-AlertInfo" | "AdvancedHunting-AlertEvidence",
    "properties": {...}}]}`; records of one AlertId are joined into one AlertRef.
    """
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PayloadError("'records' must be a list of objects")
    titles: dict[str, dict[str, Any]] = {}
    ips: dict[str, list[str]] = {}
    messages: dict[str, list[AnalyzedMessage]] = {}
    tenants: dict[str, str] = {}
    for record in records:
        props = record.get("properties")
        if not isinstance(props, dict) or not isinstance(props.get("AlertId"), str):
            raise PayloadError("every record needs properties.AlertId")
        alert_id = props["AlertId"]
        tenants[alert_id] = record.get("tenantId") or tenant_id or ""
        category = record.get("category", "")
        if category.endswith("AlertInfo"):
            titles[alert_id] = props
        elif category.endswith("AlertEvidence"):
            if props.get("EntityType") == "Ip" and props.get("RemoteIP"):
                ips.setdefault(alert_id, []).append(str(props["RemoteIP"]))
            if props.get("EntityType") == "MailMessage" and props.get("NetworkMessageId"):
                messages.setdefault(alert_id, []).append(
                    AnalyzedMessage(network_message_id=str(props["NetworkMessageId"]))
                )
    found = []
    for alert_id, info in titles.items():
        if str(info.get("Title", "")).strip().casefold() != POLICY_TITLE:
            continue
        if not tenants[alert_id]:
            raise PayloadError(f"record for alert {alert_id} names no tenantId")
        if not ips.get(alert_id) and not messages.get(alert_id):
            raise PayloadError(f"alert {alert_id} has no Ip or MailMessage evidence record")
        found.append(
            AlertRef(
                alert_id=alert_id,
                tenant_id=tenants[alert_id],
                severity=str(info.get("Severity", "unknown")).lower(),
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
    if "object" in body or body.get("type", "").endswith("/Incidents"):
        return from_sentinel_incident(body, tenant_id)
    if "id" in body and "title" in body:
        return [from_graph_alert(body, tenant_id, source="webhook")]
    raise PayloadError(
        "unrecognised alert shape: expected a Graph security alert, a Sentinel incident, "
        "Defender streaming records or {tenant, alert_id, ...}"
    )

