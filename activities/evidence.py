"""Evidence activities: read the tenant, summarise inside the activity, return small frozen models.

Row sets (hunting results, audit records, cmdlet output) never leave the activity: each method
turns them into the few numbers and names grading needs, so workflow history stays small and
holds no message content. Errors are the `ApplicationError`s `activities.clients` maps
(429/5xx retryable with Retry-After, other 4xx not), so Temporal is the one retry layer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clients import ClientPool, ExoError, TenantClients
from activities.hunting import HuntingQuery, default_catalogue, run_hunting_query
from activities.tenant_cache import ACCEPTED_DOMAINS, BLOCK_LISTS, CONNECTORS, TenantCache, directory_user, utc_now
from workflows import audit
from workflows.audit import AUDIT_OPERATIONS, AUDIT_RECORD_TYPES, CONNECTOR_OPERATIONS
from workflows.grading import ip_networks
from workflows.timestamps import parse_timestamp
from workflows.types import (
    AcceptedDomains,
    AdminEvidence,
    AdminSignIns,
    AdminSignInsInput,
    AuditEntry,
    AuditLog,
    AuditLogInput,
    CompromisedSenders,
    CompromisedSendersInput,
    ConnectorChange,
    ConnectorChanges,
    ConnectorChangesInput,
    ConnectorConfig,
    ConnectorResolution,
    Direction,
    DirectoryAccount,
    DirectoryAccounts,
    DirectoryAccountsInput,
    FailureBurst,
    MailStats,
    MailStatsInput,
    ResolveConnectorInput,
    RestrictedEntities,
    RestrictedEntitiesInput,
    SharedReadInput,
    SignInThresholds,
    TenantInput,
    split_list,
)

log = structlog.get_logger("quell.evidence")

AuditRecord = tuple[datetime, str, str, dict[str, Any]]
"""One audit record from any source: (time, operation, actor UPN, AuditData)."""
AUDIT_SOURCES = ("graph_audit_log", "search_unified_audit_log", "cloud_app_events")
"""Tried in this order; the first that answers (even with nothing) decides."""
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
AUDIT_POLL_FIRST = 1.0
AUDIT_POLL_MAX = 15.0
SAMPLE_SIZE = 10
MESSAGE_TRACE_WINDOW = timedelta(days=10)
"""Get-MessageTraceV2 refuses a StartDate..EndDate range longer than 10 days."""
MESSAGE_TRACE_IPS = 5
MAX_LISTED = 100
UNIFIED_AUDIT_PAGE = 5000
"""Search-UnifiedAuditLog's largest ResultSize: the records one call of a session answers."""
UNIFIED_AUDIT_SESSION = 50_000
"""The records a ReturnLargeSet session serves at most."""


# --------------------------------------------------------------------------- parsing helpers


def _bool(value: Any, default: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().casefold() in ("true", "false"):
        return value.strip().casefold() == "true"
    return default


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _fold(value: Any) -> str:
    return str(value or "").strip().casefold()


def _json_list(value: Any) -> list[str]:
    """A `make_set` column: a list from Graph JSON, or the JSON text some engines return."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def connector_config(row: Mapping[str, Any], direction: Direction) -> ConnectorConfig:
    """Get-Inbound/OutboundConnector output as a ConnectorConfig (every property kept for revert)."""
    return ConnectorConfig(
        guid=str(row.get("Guid") or row.get("ExchangeObjectId") or row.get("Identity") or ""),
        name=str(row.get("Name") or row.get("Identity") or ""),
        direction=direction,
        enabled=_bool(row.get("Enabled"), default=True),
        connector_type=row.get("ConnectorType"),
        when_created=parse_timestamp(row.get("WhenCreatedUTC") or row.get("WhenCreated")),
        when_changed=parse_timestamp(row.get("WhenChangedUTC") or row.get("WhenChanged")),
        properties=_json_safe(dict(row)),
    )


def name_values(items: Any, value: str) -> dict[str, Any]:
    """An AuditData list of `{Name, <value>}` items as name -> value, as logged: the cmdlet's
    `Parameters` (`Value`; AuditEntry normalises them) or a directory record's
    `ModifiedProperties` (`NewValue`)."""
    return {str(item["Name"]): _json_safe(item.get(value))
            for item in items or [] if isinstance(item, Mapping) and item.get("Name")}


def _audit_data(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def audit_entries(records: Iterable[AuditRecord]) -> tuple[list[ConnectorChange], list[AuditEntry]]:
    """The records that count (rule 1: failed ones changed nothing), oldest first, split into
    connector changes and the other admin operations."""
    connectors: list[ConnectorChange] = []
    others: list[AuditEntry] = []
    for at, operation, actor, data in sorted(records, key=lambda r: r[0]):
        if audit.failed(data):
            continue
        fields: dict[str, Any] = dict(
            at=at, operation=operation, actor=actor,
            client_ip=data.get("ClientIP") or data.get("ClientIPAddress") or None,
            object_id=str(data["ObjectId"]) if data.get("ObjectId") else None,
            parameters=name_values(data.get("Parameters"), "Value"),
            modified=name_values(data.get("ModifiedProperties"), "NewValue"),
        )
        entry = AuditEntry(**fields)
        if audit.connector_verb(entry):
            connectors.append(ConnectorChange(**fields))
        else:
            others.append(entry)
    return connectors, others


def sign_in_evidence(identities: Iterable[tuple[str, str | None]], rows: list[dict[str, Any]]) -> list[AdminSignIns]:
    """Each account's sign-in evidence from a sign-in query's `burst` and `country` rows; an account
    owns a row by object id or UPN. `identities` are (upn, object id or None)."""
    admins = []
    for upn, object_id in identities:
        mine = {_fold(upn), _fold(object_id)} - {""}

        def own(row: Mapping[str, Any], section: str) -> bool:
            return row.get("Section") == section and bool(
                {_fold(row.get("AccountObjectId")), _fold(row.get("AccountUpn"))} & mine)

        countries: dict[str, int] = {}
        for row in rows:
            if own(row, "country") and (country := str(row.get("CountryCode") or "")):
                countries[country] = countries.get(country, 0) + int(row.get("SignIns") or 0)
        bursts = [
            FailureBurst(
                failures=int(row["FailedLogonCount"]),
                earliest_failure=parse_timestamp(row["EarliestTime"]),
                latest_failure=parse_timestamp(row["LatestTime"]),
                first_success=parse_timestamp(row.get("FirstSuccess")),
                application=str(row.get("Application") or ""),
                isp=str(row.get("ISP") or ""),
                country=str(row.get("CountryCode") or ""),
            )
            for row in rows if own(row, "burst")
        ]
        admins.append(AdminSignIns(
            upn=upn, object_id=object_id, successful_signins=sum(countries.values()), countries=countries,
            failure_bursts=bursts,
        ))
    return admins


def compromised_sender_accounts(rows: Iterable[Mapping[str, Any]]) -> CompromisedSenders:
    """The accounts of a compromised-sender answer (SenderObjectId, SenderFromAddress rows)."""
    rows = list(rows)
    object_ids = sorted({str(r.get("SenderObjectId")) for r in rows if r.get("SenderObjectId")})
    addresses = sorted({_fold(r.get("SenderFromAddress")) for r in rows} - {""})
    return CompromisedSenders(object_ids=object_ids[:MAX_LISTED], addresses=addresses[:MAX_LISTED])


@dataclass
class AuditAnswer:
    """What the audit source that decided answered."""

    source: str
    records: list[AuditRecord]
    failed: list[str]
    """The sources tried before it that failed, with why."""
    sign_ins: list[AdminSignIns] | None = None
    """The connector actors' sign-in evidence, when CloudAppEvents answered and it was asked for."""


@dataclass(frozen=True)
class BlockLists:
    """The tenant's restricted entities, as the cases that share one read match them."""

    connectors: frozenset[str]
    """Blocked connectors' ids and names, casefolded."""
    senders: tuple[str, ...]
    """Blocked sender addresses, casefolded and sorted."""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def address_matches(address: str, entries: Iterable[str]) -> bool:
    """True when an IP literal falls in one of the entries (literal, CIDR or range; names ignored)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in ip_networks(entries))


def _single(candidates: list[str], method: str, connectors: list[ConnectorConfig]) -> ConnectorResolution:
    """The step's one existing connector, or connector_unresolved when it named several."""
    if len(candidates) > 1:
        return ConnectorResolution(
            candidates=candidates, method=method, connectors=connectors,
            reason=f"the alert's evidence matches {len(candidates)} connectors ({method}): {', '.join(candidates)}",
        )
    config = next(c for c in connectors if _fold(c.name) == _fold(candidates[0]))
    return ConnectorResolution(connector=config, candidates=candidates, method=method, connectors=connectors)


def connector_domains(connector: ConnectorConfig) -> list[str]:
    """The domains a connector is known by: the sender (inbound) or recipient (outbound) domains
    without the `smtp:` prefix and `;cost` suffix, its TLS certificate or TLS domain, and its smart
    hosts' names. A bare `*` (any domain) names no connector."""
    props = connector.properties
    if connector.direction == "inbound":
        values = [*split_list(props.get("SenderDomains")), *split_list(props.get("AssociatedAcceptedDomains")),
                  str(props.get("TlsSenderCertificateName") or "")]
    else:
        values = [*split_list(props.get("RecipientDomains")), *split_list(props.get("SmartHosts")),
                  str(props.get("TlsDomain") or "")]
    domains = []
    for value in values:
        domain = _fold(value.partition(":")[2] if value.casefold().startswith("smtp:") else value).partition(";")[0]
        if domain and domain != "*" and not _is_ip(domain):
            domains.append(domain)
    return domains


def domain_matches(domain: str, patterns: Iterable[str]) -> bool:
    """`contoso.com` matches `contoso.com`; `mail.contoso.com` also matches `*.contoso.com`."""
    wanted = _fold(domain)
    return any(wanted == p or (p.startswith("*.") and wanted.endswith(p[1:])) for p in patterns)


def shared_since(request: SharedReadInput, asked: datetime | None = None) -> datetime:
    """The earliest start of a tenant-wide read that may serve the request's case: when its alert
    was raised (docs/storms.md, "Tenant calls"). A case whose alert carries no time reads for itself
    (from `asked`, by default now)."""
    raised = request.alert_raised
    if raised is None:
        return asked or utc_now()
    return raised if raised.tzinfo is not None else raised.replace(tzinfo=UTC)


def _step(names: Iterable[str], method: str, connectors: list[ConnectorConfig]) -> ConnectorResolution | None:
    """The step's existing connectors among `names`, or None when it names none."""
    existing = {_fold(c.name): c.name for c in connectors}
    found = sorted({existing[_fold(n)] for n in names if _fold(n) in existing})
    return _single(found, method, connectors) if found else None


def _by_configuration(request: ResolveConnectorInput, connectors: list[ConnectorConfig]) -> ConnectorResolution | None:
    """The first of the alert's connector name, the connectors' IP configuration and the alert's
    connector domain that names an existing connector."""
    by_config = [
        c.name
        for c in connectors
        if any(
            address_matches(ip, split_list(c.properties.get("SenderIPAddresses" if c.direction == "inbound" else "SmartHosts")))
            for ip in request.ip_addresses
        )
    ]
    domain = request.connector_domain or ""
    by_domain = [c.name for c in connectors if domain and domain_matches(domain, connector_domains(c))]
    for names, method in (
        ([request.connector_name] if request.connector_name else [], "alert_connector_name"),
        (by_config, "connector_ip_configuration"),
        (by_domain, "connector_domain"),
    ):
        if resolved := _step(names, method, connectors):
            return resolved
    return None


# --------------------------------------------------------------------------- activities


class EvidenceActivities:
    """Every read the case needs, as activities registered on the case worker."""

    def __init__(
        self, pool: ClientPool, cache: TenantCache, catalogue: Mapping[str, HuntingQuery] | None = None
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._catalogue = catalogue or default_catalogue()

    def _clients(self, tenant_id: str) -> TenantClients:
        return self._pool.for_tenant(tenant_id)

    async def _hunt(self, clients: TenantClients, query_id: str, **params: Any) -> list[dict[str, Any]]:
        return await run_hunting_query(clients, query_id, params, self._catalogue)

    async def _connectors(self, tenant_id: str, since: datetime) -> list[ConnectorConfig]:
        """Every inbound and outbound connector, from a read of the tenant that started at or after
        `since` (shared by the cases it serves)."""
        clients = self._clients(tenant_id)

        async def read() -> tuple[ConnectorConfig, ...]:
            inbound, outbound = await asyncio.gather(
                clients.exo.invoke("Get-InboundConnector"), clients.exo.invoke("Get-OutboundConnector")
            )
            return (*(connector_config(r, "inbound") for r in inbound), *(connector_config(r, "outbound") for r in outbound))

        return list(await self._cache.get(tenant_id, CONNECTORS, since, read))

    @activity.defn(name="evidence.resolve-connector")
    async def resolve_connector(self, request: ResolveConnectorInput) -> ConnectorResolution:
        """The connector the alert names, else docs/scenarios.md order: (1) connector IP
        configuration, the alert's connector domain, (2) EmailEvents rows from the alert's IPs, (3)
        EmailEvents rows of the alert's messages. The first step that yields an existing connector
        decides (rule 9: names of connectors that no longer exist are dropped)."""
        asked = utc_now()
        connectors = await self._connectors(request.tenant_id, shared_since(request, asked))
        resolved = _by_configuration(request, connectors)
        if resolved is None:
            # Refresh on miss: a list read before this case asked may predate the connector it is about.
            connectors = await self._connectors(request.tenant_id, asked)
            resolved = _by_configuration(request, connectors)
        if resolved is not None:
            return resolved
        if not request.ip_addresses and not request.message_ids:
            return ConnectorResolution(method="none", connectors=connectors,
                                       reason="the alert names no existing connector and carries no IP or message evidence")

        rows = await self._hunt(
            self._clients(request.tenant_id), "connector-from-telemetry",
            ipAddresses=request.ip_addresses, networkMessageIds=request.message_ids,
            since=request.since, until=request.until,
        )
        for column, method in (("ByIp", "email_events_sender_ip"), ("ByMessage", "email_events_message_ids")):
            used = [n for row in rows if int(row.get(column) or 0) > 0 for n in split_list(row.get("Connectors"))]
            if resolved := _step(used, method, connectors):
                return resolved
        return ConnectorResolution(
            method="none", connectors=connectors,
            reason="no existing connector is named by the alert, holds its IPs or domain in its configuration, "
                   "or carried its mail",
        )

    @activity.defn(name="evidence.connector-changes")
    async def connector_changes(self, request: ConnectorChangesInput) -> ConnectorChanges:
        """Audit records of this connector (cases begun before version 2; since then `audit_log`)."""
        clients = self._clients(request.tenant_id)
        answer = await self._audit_records(clients, request.since, request.until, CONNECTOR_OPERATIONS, ["exchangeAdmin"])
        changes, _ = audit_entries(answer.records)
        mine = audit.connector_records(changes, request.connector_name, request.connector_guid, request.direction)
        return ConnectorChanges(changes=mine, source=answer.source)

    @activity.defn(name="evidence.audit-log")
    async def audit_log(self, request: AuditLogInput) -> AuditLog:
        """One audit query for the whole case: every connector's changes since `since` (a revert
        needs the value set before the lookback) and the admins' other operations in the lookback;
        when only CloudAppEvents answers, also the sign-ins the input asks for (the same query)."""
        clients = self._clients(request.tenant_id)
        answer = await self._audit_records(
            clients, request.since, request.until, AUDIT_OPERATIONS, AUDIT_RECORD_TYPES,
            request.sign_ins, request.lookback_start)
        changes, others = audit_entries(answer.records)
        recent = [r for r in others if request.lookback_start <= r.at <= request.until]
        return AuditLog(connector_changes=changes, admin_records=recent, source=answer.source,
                        failed_sources=answer.failed, sign_ins=answer.sign_ins)

    async def _audit_records(
        self, clients: TenantClients, since: datetime, until: datetime, operations: list[str], record_types: list[str],
        sign_ins: SignInThresholds | None = None, sign_ins_since: datetime | None = None,
    ) -> AuditAnswer:
        """The records of the first source that answers: Graph audit log query, else
        Search-UnifiedAuditLog, else CloudAppEvents. A source that answers (even with nothing)
        decides; when none answers the activity fails, so the case reports the audit log as
        unavailable instead of "no changes"."""
        failures: list[ApplicationError | ExoError] = []
        failed: list[str] = []
        reads: dict[str, Callable[[], Any]] = {
            "graph_audit_log": lambda: self._graph_audit(clients, since, until, operations, record_types),
            "search_unified_audit_log": lambda: self._unified_audit(clients, since, until, operations),
        }
        for source in AUDIT_SOURCES:
            try:
                if source == "cloud_app_events":
                    records, evidence = await self._cloud_app_events(
                        clients, since, until, operations, sign_ins, sign_ins_since or since)
                    return AuditAnswer(source, records, failed, evidence)
                return AuditAnswer(source, await reads[source](), failed)
            except (ApplicationError, ExoError) as failure:
                log.warning("audit source failed", source=source, error=str(failure)[:200])
                failures.append(failure)
                failed.append(f"{source}: {str(failure)[:150]}")
        retryable = [f for f in failures if isinstance(f, ApplicationError) and not f.non_retryable]
        delays = [f.next_retry_delay for f in retryable if f.next_retry_delay]
        raise ApplicationError(
            "no audit source answered: " + "; ".join(failed),
            type="AuditUnavailable",
            non_retryable=not retryable,
            next_retry_delay=max(delays) if delays else None,
        )

    async def _graph_audit(
        self, clients: TenantClients, since: datetime, until: datetime, operations: list[str], record_types: list[str]
    ) -> list[AuditRecord]:
        # A retried attempt resumes polling the query the earlier attempt created.
        details = activity.info().heartbeat_details
        query_id = str(details[0]) if details else ""
        if not query_id:
            created = await clients.graph_http.request("POST", "/security/auditLog/queries", json={
                "displayName": f"quell case audit {until.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
                "filterStartDateTime": since.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "filterEndDateTime": until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "recordTypeFilters": record_types,
                "operationFilters": operations,
            })
            query_id = str(created["id"])
        delay = AUDIT_POLL_FIRST
        while True:
            activity.heartbeat(query_id)
            state = await clients.graph_http.request("GET", f"/security/auditLog/queries/{quote(query_id)}")
            status = _fold(state.get("status"))
            if status == "succeeded":
                break
            if status in ("failed", "cancelled"):
                raise ApplicationError(f"audit log query {status}", type="AuditQueryFailed", non_retryable=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, AUDIT_POLL_MAX)
        records: list[AuditRecord] = []
        path: str | None = f"/security/auditLog/queries/{quote(query_id)}/records"
        while path:
            activity.heartbeat(query_id)
            page = await clients.graph_http.request("GET", path)
            for record in page.get("value", []):
                at = parse_timestamp(record.get("createdDateTime"))
                if at is not None:
                    actor = record.get("userPrincipalName") or record.get("userId") or ""
                    records.append((at, str(record.get("operation", "")), str(actor), _audit_data(record.get("auditData"))))
            path = _relative_graph_path(page.get("@odata.nextLink"))
        return records

    async def _unified_audit(
        self, clients: TenantClients, since: datetime, until: datetime, operations: list[str]
    ) -> list[AuditRecord]:
        """Search-UnifiedAuditLog in one paged session, as Microsoft documents it: the same command
        with a SessionId and SessionCommand ReturnLargeSet, run again and again, each answer the
        session's next records (ResultSize 5,000 at most), until all ResultCount records arrived
        or an answer is empty. A session serves 50,000 records at most, unsorted, so a search
        that matches more would lose records at random: that source fails instead."""
        # No RecordType: it takes one type, and role grants are directory records; the operations filter.
        command = {
            "StartDate": since.astimezone(UTC).isoformat(),
            "EndDate": until.astimezone(UTC).isoformat(),
            "Operations": operations,
            "SessionId": f"quell-{uuid.uuid4()}",
            "SessionCommand": "ReturnLargeSet",
            "ResultSize": UNIFIED_AUDIT_PAGE,
        }
        rows: list[dict[str, Any]] = []
        for _ in range(UNIFIED_AUDIT_SESSION // UNIFIED_AUDIT_PAGE):
            activity.heartbeat()
            page = await clients.exo.invoke("Search-UnifiedAuditLog", command)
            if not page:
                break
            rows.extend(page)
            count = int(page[-1].get("ResultCount") or 0)
            if count > UNIFIED_AUDIT_SESSION:
                raise ApplicationError(
                    f"Search-UnifiedAuditLog matched {count} records, more than the {UNIFIED_AUDIT_SESSION} "
                    "a session serves", type="AuditSearchTooLarge", non_retryable=True)
            if len(rows) >= count:
                break
        records = []
        for row in rows:
            at = parse_timestamp(row.get("CreationDate"))
            if at is not None:
                operation = row.get("Operations") or row.get("Operation") or ""
                records.append((at, str(operation), str(row.get("UserIds") or ""), _audit_data(row.get("AuditData"))))
        return records

    async def _cloud_app_events(
        self, clients: TenantClients, since: datetime, until: datetime, operations: list[str],
        sign_ins: SignInThresholds | None, sign_ins_since: datetime,
    ) -> tuple[list[AuditRecord], list[AdminSignIns] | None]:
        """The records, and when `sign_ins` asks for them, the sign-in evidence of every actor of a
        connector record since `sign_ins_since` (the case's acting admins are among them)."""
        since = max(since, until - timedelta(days=30))  # advanced hunting keeps 30 days
        thresholds = sign_ins or SignInThresholds(failure_threshold=0, success_within=timedelta(0))
        rows = await self._hunt(
            clients, "audit-records-cloudapp", operations=operations, since=since, until=until,
            signInsFor=CONNECTOR_OPERATIONS if sign_ins else [], signInsSince=sign_ins_since,
            failureThreshold=thresholds.failure_threshold,
            successWithinSeconds=int(thresholds.success_within.total_seconds()))
        upns: dict[str, str] = {}
        records = []
        actors: dict[str, tuple[str, str | None]] = {}
        for row in rows:
            at = parse_timestamp(row.get("Timestamp"))
            audit = _audit_data(row.get("RawEventData"))
            if row.get("Section") != "record" or at is None:
                continue
            actor = str(audit.get("UserId") or "")
            object_id = str(row.get("AccountObjectId") or "")
            if not actor and GUID.match(object_id):
                if object_id not in upns:
                    user = await clients.graph_http.request(
                        "GET", f"/users/{object_id}", params={"$select": "userPrincipalName"})
                    upns[object_id] = str((user or {}).get("userPrincipalName") or object_id)
                actor = upns[object_id]
            operation = str(row.get("ActionType") or "")
            records.append((at, operation, actor, audit))
            if actor and operation in CONNECTOR_OPERATIONS and at >= sign_ins_since:
                actors.setdefault(_fold(actor), (actor, object_id if GUID.match(object_id) else None))
        return records, sign_in_evidence(actors.values(), rows) if sign_ins else None

    @activity.defn(name="evidence.mail-stats")
    async def mail_stats(self, request: MailStatsInput) -> MailStats:
        """The connector's mail in the lookback and the 168-hour baseline, and the tenant's
        compromised senders, from one hunting call; message trace corroborates. The accepted domains
        classify the mail's domains: the input's, else read here (and returned) through the tenant
        cache, so the case need not wait for another activity to read them. With `request.resolve`
        the connector is the one the alert names by configuration, from the tenant's shared
        connector list (the resolution's read), and none named means nothing is read."""
        clients = self._clients(request.tenant_id)
        name = request.connector_name
        if request.resolve is not None:
            connectors = await self._connectors(request.tenant_id, shared_since(request.resolve))
            resolved = _by_configuration(request.resolve, connectors)
            if resolved is None or resolved.connector is None:
                return MailStats()
            name = resolved.connector.name
        domains = request.accepted_domains
        if domains is None:
            since = shared_since(request)
            domains = (await self._accepted_domains(clients, request.tenant_id, since)).domains
        now = request.now.astimezone(UTC)
        lookback_start = now - request.lookback
        baseline_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=167)
        rows = await self._hunt(
            clients, "connector-mail",
            connectorName=name, since=min(lookback_start, baseline_start), until=now,
            lookbackStart=lookback_start, acceptedDomains=sorted({_fold(d) for d in domains}),
            partnerDomains=sorted({_fold(d) for d in request.partner_domains}),
            baselineStart=now - timedelta(days=30), baselineEnd=now - timedelta(days=1),
            recentStart=now - timedelta(days=1), minPriorMessages=3, compromisedPerHour=request.compromised_per_hour,
        )
        stats = summarise_mail(rows)
        trace = await self._filtered_as_spam(clients, stats.sender_ips, lookback_start, now)
        read = domains if request.accepted_domains is None else None
        return stats.model_copy(update={"trace_filtered_as_spam": trace, "accepted_domains": read, "connector_name": name})

    async def _filtered_as_spam(
        self, clients: TenantClients, sender_ips: list[str], since: datetime, until: datetime
    ) -> int | None:
        """Seeds 001/002: message trace by the connector's IP, counting FilteredAsSpam messages.

        Corroboration only (junk_delivery_spike is graded from EmailEvents), so a trace that
        cannot be read leaves None instead of failing the mail evidence."""
        start = max(since, until - MESSAGE_TRACE_WINDOW)
        ips = [ip for ip in sender_ips if _is_ip(ip)][:MESSAGE_TRACE_IPS]
        if not ips:
            return 0
        try:
            answers = await asyncio.gather(*(
                clients.exo.invoke("Get-MessageTraceV2", {
                    "StartDate": start.astimezone(UTC).isoformat(),
                    "EndDate": until.astimezone(UTC).isoformat(),
                    "FromIP": ip,
                    "Status": ["FilteredAsSpam"],
                    "ResultSize": 5000,
                })
                for ip in ips
            ))
        except (ApplicationError, ExoError) as failure:
            log.warning("message trace unavailable", error=str(failure)[:200])
            return None
        return len({str(row.get("MessageTraceId") or row.get("MessageId")) for rows in answers for row in rows})

    @activity.defn(name="evidence.restricted-entities")
    async def restricted_entities(self, request: RestrictedEntitiesInput) -> RestrictedEntities:
        """The tenant's blocked connectors and senders, from a read shared by the cases it serves."""
        clients = self._clients(request.tenant_id)

        async def read() -> BlockLists:
            connectors, senders = await asyncio.gather(
                clients.exo.invoke("Get-BlockedConnector"), clients.exo.invoke("Get-BlockedSenderAddress")
            )
            return BlockLists(
                connectors=frozenset({_fold(row.get("ConnectorId")) for row in connectors}
                                     | {_fold(row.get("ConnectorName")) for row in connectors}) - {""},
                senders=tuple(sorted({_fold(row.get("SenderAddress")) for row in senders} - {""})),
            )

        blocked = await self._cache.get(request.tenant_id, BLOCK_LISTS, shared_since(request), read)
        return RestrictedEntities(
            blocked_connector=bool({_fold(request.connector_guid), _fold(request.connector_name)} & blocked.connectors),
            blocked_senders=list(blocked.senders),
        )

    @activity.defn(name="evidence.accepted-domains")
    async def accepted_domains(self, request: TenantInput) -> AcceptedDomains:
        """The tenant's accepted domains, from a read shared by the cases it serves (docs/storms.md)."""
        return await self._accepted_domains(self._clients(request.tenant_id), request.tenant_id, shared_since(request))

    async def _accepted_domains(self, clients: TenantClients, tenant_id: str, since: datetime) -> AcceptedDomains:
        async def read() -> AcceptedDomains:
            rows = await clients.exo.invoke("Get-AcceptedDomain")
            domains = {_fold(row.get("DomainName") or row.get("Name")) for row in rows}
            return AcceptedDomains(domains=sorted(domains - {""}))

        return await self._cache.get(tenant_id, ACCEPTED_DOMAINS, since, read)

    @activity.defn(name="evidence.admin-sign-ins")
    async def admin_sign_ins(self, request: AdminSignInsInput) -> AdminEvidence:
        """Object ids, brute-force bursts and sign-in countries of the acting admins, from one
        hunting call; an admin the input's directory accounts name is not looked up again."""
        if not request.upns:
            return AdminEvidence(admins=[])
        clients = self._clients(request.tenant_id)
        known = {_fold(a.upn): (a.upn, a.object_id) for a in request.accounts}
        since = shared_since(request)

        async def identity(upn: str) -> tuple[str, str | None]:
            return known.get(_fold(upn)) or await self._identity(request.tenant_id, upn, since)

        identities = await asyncio.gather(*(identity(upn) for upn in request.upns))
        rows = await self._hunt(
            clients, "admin-sign-ins", accountObjectIds=[oid for _, oid in identities if oid],
            accountUpns=[_fold(upn) for upn in request.upns], since=request.since, until=request.until,
            failureThreshold=request.failure_threshold, successWithinSeconds=int(request.success_within.total_seconds()),
        )
        return AdminEvidence(admins=sign_in_evidence(identities, rows))

    async def _identity(self, tenant_id: str, upn: str, since: datetime) -> tuple[str, str | None]:
        """(upn, object id) from a directory read that started at or after `since` (shared by the
        cases it serves); an actor with no directory user (a service, a deleted account) keeps its
        name and no id."""
        clients = self._clients(tenant_id)

        async def read() -> tuple[str, str] | None:
            try:
                user = await clients.graph_http.request(
                    "GET", f"/users/{quote(upn, safe='@')}", params={"$select": "id,userPrincipalName"})
            except ApplicationError as failure:
                if failure.type in ("GraphHttp404", "GraphHttp400"):
                    return None
                raise
            object_id = str((user or {}).get("id") or "")
            return (str(user.get("userPrincipalName") or upn), object_id) if GUID.match(object_id) else None

        return await self._cache.get(tenant_id, directory_user(upn), since, read) or (upn, None)

    @activity.defn(name="evidence.compromised-senders")
    async def compromised_senders(self, request: CompromisedSendersInput) -> CompromisedSenders:
        """Cases begun before `fewer-tenant-calls` (since then `mail_stats` answers them)."""
        rows = await self._hunt(self._clients(request.tenant_id), "compromised-sender-accounts",
                                since=request.since, until=request.until, countThreshold=request.per_hour)
        return compromised_sender_accounts(rows)

    @activity.defn(name="evidence.directory-accounts")
    async def directory_accounts(self, request: DirectoryAccountsInput) -> DirectoryAccounts:
        """Which audit actors are directory users (rule 10): an actor that is no UPN (a service
        such as `NT AUTHORITY\\SYSTEM (...)`, an application id) or that the directory does not
        know is never suspect."""
        since = shared_since(request)

        async def account(upn: str) -> DirectoryAccount:
            if "@" not in upn:
                return DirectoryAccount(upn=upn)
            name, object_id = await self._identity(request.tenant_id, upn, since)
            return DirectoryAccount(upn=name, object_id=object_id)

        return DirectoryAccounts(accounts=list(await asyncio.gather(*(account(u) for u in request.upns))))

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.resolve_connector,
            self.connector_changes,
            self.audit_log,
            self.directory_accounts,
            self.mail_stats,
            self.restricted_entities,
            self.accepted_domains,
            self.admin_sign_ins,
            self.compromised_senders,
        ]


def _relative_graph_path(next_link: Any) -> str | None:
    """`@odata.nextLink` is absolute; GraphHttp takes the path after the version segment."""
    if not next_link:
        return None
    parts = urlsplit(str(next_link))
    path = re.sub(r"^/(v1\.0|beta)", "", parts.path)
    return f"{path}?{parts.query}" if parts.query else path


def summarise_mail(rows: list[dict[str, Any]]) -> MailStats:
    """The connector-mail answer as MailStats (the catalogue file describes each section)."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        sections.setdefault(str(row.get("Section")), []).append(row)
    total = (sections.get("total") or [{}])[0]
    hourly: dict[str, int] = {}
    for row in sections.get("hour", []):
        hour = parse_timestamp(row.get("Hour"))
        if hour is not None:
            key = hour.isoformat()
            hourly[key] = hourly.get(key, 0) + int(row.get("Messages") or 0)

    def values(section: str) -> list[str]:
        rows = sorted(sections.get(section, []), key=lambda r: -int(r.get("Messages") or 0))
        return [str(r["Value"]) for r in rows if r.get("Value")][:MAX_LISTED]

    threats = sections.get("threat", [])
    by_kind = {str(r.get("Kind")): r for r in threats}
    malicious_ids = sorted({i for r in threats for i in _json_list(r.get("SampleIds"))})[:SAMPLE_SIZE]
    contact = {section: int((sections.get(section) or [{}])[0].get("Distinct") or 0)
               for section in ("new_sender", "new_recipient_domain")}

    def count(name: str) -> int:
        return int(total.get(name) or 0)

    return MailStats(
        messages=count("Messages"),
        p1_p2_mismatch=count("Mismatch"),
        empty_sender_object_id=count("NoObjectId"),
        unprovisioned_sender_domain=count("Unprovisioned"),
        junk_or_quarantined=count("Junk"),
        hourly_counts=hourly,
        external_recipient_domains=count("ExternalDomains"),
        spoofed_to_partners=count("SpoofedToPartner"),
        spoofed_to_internal=count("SpoofedToInternal"),
        malicious_url_messages=int((by_kind.get("url") or {}).get("Messages") or 0),
        malicious_attachment_messages=int((by_kind.get("attachment") or {}).get("Messages") or 0),
        sender_ips=values("sender_ip"),
        spoofed_header_senders=values("spoofed_sender"),
        sample_message_ids=[str(r["Value"]) for r in sections.get("sample", []) if r.get("Value")][:SAMPLE_SIZE],
        malicious_sample_message_ids=malicious_ids,
        first_contact_senders=contact["new_sender"],
        first_contact_recipient_domains=contact["new_recipient_domain"],
        compromised=compromised_sender_accounts(sections.get("compromised_sender", [])),
    )
