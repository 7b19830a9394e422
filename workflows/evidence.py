"""Workflow-side evidence orchestration: resolve the alerted connector, then read every source.

Runs inside the case workflow, so it is deterministic: times come from the caller (`now`) or
`workflow.now()`, and activities run on the workflow's own task queue. Sources run in parallel;
one that still fails after its retries becomes an entry in `Evidence.unavailable` (grading turns
that into `evidence_unavailable` → needs_review), never a silent gap that reads as "clean".

Since version 2 (`collect`, `sweep_only`) one audit query per case reads every connector's
changes and the admins' other operations; cases begun before replay `collect_evidence`.

Since `parallel-evidence` (`start_early_reads`) the audit query and then the directory lookup
run from the case's start, beside the connector's resolution (neither depends on which connector
the alert names); once the connector is resolved its mail (which reads the accepted domains
itself) and its restrictions are read, and the acting admins' sign-ins once the directory answered.
At most three reads in a row: audit, directory, sign-ins (and resolution, mail). Since
`mail-beside-resolution` the mail read starts then too: the mail activity takes the connector the
alert names by configuration itself (from the connector list the resolution reads, one read the
tenant cache shares), and only a connector found another way waits for the resolution.

Hunting calls (Microsoft allows ~45 a minute per tenant): each evidence activity makes at most
one, and a case at most three (docs/storms.md): `resolve_connector` when resolution needs
telemetry, `mail_stats` (the connector's mail and the tenant's compromised senders), and either
`admin_sign_ins` or, when only CloudAppEvents answers the audit query, `audit_log` itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.evidence import EvidenceActivities
    from workflows import metrics, retries
    from workflows.audit import connector_records, connector_verb, fold
    from workflows.changes import acting_admins, relevant_changes
    from workflows.types import (
        AcceptedDomains,
        AdminEvidence,
        AdminSignInsInput,
        AuditLog,
        AuditLogInput,
        CaseInput,
        CompromisedSenders,
        CompromisedSendersInput,
        ConnectorChanges,
        ConnectorChangesInput,
        ConnectorConfig,
        ConnectorResolution,
        DirectoryAccount,
        DirectoryAccounts,
        DirectoryAccountsInput,
        Evidence,
        MailStats,
        MailStatsInput,
        ResolveConnectorInput,
        RestrictedEntities,
        RestrictedEntitiesInput,
        SignInThresholds,
        Sweep,
        TenantInput,
    )

T = TypeVar("T")

EXO_TIMEOUT = timedelta(seconds=60)
HUNTING_TIMEOUT = timedelta(minutes=4)
"""An activity runs up to one hunting request (Microsoft stops a query after 3 minutes; the HTTP
timeout is `activities.hunting.REQUEST_TIMEOUT`) plus its EXO or Graph reads."""
AUDIT_TIMEOUT = timedelta(minutes=10)
"""Graph audit log queries run for minutes in a real tenant; the activity polls and heartbeats."""
AUDIT_HEARTBEAT = timedelta(minutes=4)
"""Longer than one call of the slowest fallback (a CloudAppEvents hunting request)."""
AUDIT_HISTORY = timedelta(days=90)
"""Audit records older than the lookback are read too: a revert needs the value set before."""

FEWER_TENANT_CALLS = "fewer-tenant-calls"
"""Patch id. From it on `collect` takes the compromised senders from `mail_stats` (no
`compromised_senders` activity), reads the directory before the admins' sign-ins and hands them
its accounts (no second lookup of a user), and takes the sign-ins from `audit_log` when only
CloudAppEvents answered it (no `admin_sign_ins` activity): at most three hunting calls a case.
Cases begun before replay the old commands."""
PARALLEL_EVIDENCE = "parallel-evidence"
"""Patch id. From it on the audit query and the directory lookup start with the connector's
resolution (`start_early_reads`), and `mail_stats` reads the accepted domains itself: no
`accepted_domains` activity for the mail to wait for. Implies FEWER_TENANT_CALLS. Cases begun
before replay the old commands."""
MAIL_BESIDE_RESOLUTION = "mail-beside-resolution"
"""Patch id. From it on the mail read also starts with the resolution (`start_early_reads`): the
activity reads the mail of the connector the alert names by configuration (`MailStatsInput.resolve`),
or nothing when the configuration names none, and then the mail is read once the resolution
answers. Implies PARALLEL_EVIDENCE. Cases begun before replay the old commands."""


async def _source(name: str, unavailable: list[str], call: Awaitable[T]) -> T | None:
    """The activity's result, or None with `name` recorded as unavailable once retries are spent."""
    try:
        return await call
    except ActivityError as failure:
        workflow.logger.warning("evidence source unavailable", extra={"source": name, "error": str(failure.cause)[:200]})
        unavailable.append(name)
        metrics.evidence_unavailable(name)
        return None


def _resolve_input(case: CaseInput, now: datetime) -> ResolveConnectorInput:
    return ResolveConnectorInput(
        tenant_id=case.tenant_id,
        ip_addresses=list(case.alert.ip_addresses),
        message_ids=[m.network_message_id for m in case.alert.messages],
        connector_name=case.alert.connector_hint,
        connector_domain=case.alert.connector_domain,
        since=now - case.thresholds.lookback,
        until=now,
        alert_raised=case.alert.created,
    )


async def resolve_connector(case: CaseInput) -> ConnectorResolution:
    try:
        return await workflow.execute_activity_method(
            EvidenceActivities.resolve_connector,
            _resolve_input(case, workflow.now()),
            start_to_close_timeout=HUNTING_TIMEOUT,
            retry_policy=retries.TENANT,
            summary=f"resolve connector for alert {case.alert.alert_id}"[:200],
        )
    except ActivityError as failure:
        metrics.evidence_unavailable("resolve_connector")
        return ConnectorResolution(method="unavailable", reason=f"could not read the tenant: {failure.cause}"[:300])


async def _domains_and_mail(
    case: CaseInput, connector: ConnectorConfig, now: datetime, unavailable: list[str], fewer_calls: bool = False
) -> tuple[AcceptedDomains | None, MailStats | None]:
    # Mail stats classify domains as accepted, partner or external, so they wait for the list.
    domains = await _source("accepted_domains", unavailable, workflow.execute_activity_method(
        EvidenceActivities.accepted_domains, TenantInput(tenant_id=case.tenant_id, alert_raised=case.alert.created),
        start_to_close_timeout=EXO_TIMEOUT, retry_policy=retries.TENANT,
    ))
    mail = await _source("mail_stats", unavailable, workflow.execute_activity_method(
        EvidenceActivities.mail_stats,
        MailStatsInput(
            tenant_id=case.tenant_id, connector_name=connector.name, now=now, lookback=case.thresholds.lookback,
            accepted_domains=domains.domains if domains else [],
            partner_domains=list(case.organization.partner_domains),
            compromised_per_hour=case.thresholds.compromised_sender_per_hour,
        ),
        start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
        summary=f"mail through {connector.name}"[:200],
    ))
    if mail is None and fewer_calls:
        unavailable.append("compromised_senders")  # the same hunting call answers them
    return domains, mail


async def _restricted(case: CaseInput, connector: ConnectorConfig, unavailable: list[str]) -> RestrictedEntities | None:
    return await _source("restricted_entities", unavailable, workflow.execute_activity_method(
        EvidenceActivities.restricted_entities,
        RestrictedEntitiesInput(tenant_id=case.tenant_id, connector_name=connector.name, connector_guid=connector.guid,
                                alert_raised=case.alert.created),
        start_to_close_timeout=EXO_TIMEOUT, retry_policy=retries.TENANT,
        summary=f"restrictions of {connector.name} and the blocked senders"[:200],
    ))


async def _compromised(case: CaseInput, now: datetime, unavailable: list[str]) -> CompromisedSenders | None:
    return await _source("compromised_senders", unavailable, workflow.execute_activity_method(
        EvidenceActivities.compromised_senders,
        CompromisedSendersInput(
            tenant_id=case.tenant_id, since=now - case.thresholds.lookback, until=now,
            per_hour=case.thresholds.compromised_sender_per_hour,
        ),
        start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
    ))


async def collect_evidence(case: CaseInput, connector: ConnectorConfig, now: datetime) -> Evidence:
    """Cases begun before version 2: the alerted connector's audit records only."""
    lookback_start = now - case.thresholds.lookback
    unavailable: list[str] = []

    async def changes_and_admins() -> tuple[ConnectorChanges | None, AdminEvidence | None]:
        # The acting admins are the accounts in the connector's audit records, so admins wait.
        changes = await _source("connector_changes", unavailable, workflow.execute_activity_method(
            EvidenceActivities.connector_changes,
            ConnectorChangesInput(
                tenant_id=case.tenant_id, connector_name=connector.name, connector_guid=connector.guid,
                direction=connector.direction, since=now - AUDIT_HISTORY, until=now,
            ),
            start_to_close_timeout=AUDIT_TIMEOUT, heartbeat_timeout=AUDIT_HEARTBEAT,
            retry_policy=retries.TENANT, summary=f"audit records of {connector.name}"[:200],
        ))
        if changes is None:
            return None, None
        upns = acting_admins(relevant_changes(changes.changes, lookback_start, now, v2=False))
        return changes, await _admin_sign_ins(case, upns, now, unavailable)

    (domains, mail), (changes, admins), restricted, compromised = await asyncio.gather(
        _domains_and_mail(case, connector, now, unavailable), changes_and_admins(),
        _restricted(case, connector, unavailable), _compromised(case, now, unavailable),
    )
    return _evidence(
        connector, now, unavailable, domains, mail, restricted, compromised, admins,
        changes=changes.changes if changes else [], changes_source=changes.source if changes else "",
    )


def _evidence(
    connector: ConnectorConfig,
    now: datetime,
    unavailable: list[str],
    domains: AcceptedDomains | None,
    mail: MailStats | None,
    restricted: RestrictedEntities | None,
    compromised: CompromisedSenders | None,
    admins: AdminEvidence | None,
    **audit: Any,
) -> Evidence:
    """Evidence from what the sources answered (`None`: unavailable) and the audit fields."""
    return Evidence(
        connector=connector,
        mail=mail or MailStats(),
        accepted_domains=domains.domains if domains else [],
        blocked_connector=restricted.blocked_connector if restricted else False,
        blocked_senders=restricted.blocked_senders if restricted else [],
        admins=admins.admins if admins else [],
        compromised_senders=compromised.object_ids if compromised else [],
        compromised_sender_addresses=compromised.addresses if compromised else [],
        unavailable=sorted(unavailable),
        collected_at=now,
        **audit,
    )


async def _admin_sign_ins(
    case: CaseInput, upns: list[str], now: datetime, unavailable: list[str], accounts: list[DirectoryAccount] | None = None
) -> AdminEvidence | None:
    """The acting admins' sign-in evidence (none to read without acting admins); `accounts`: the
    directory's answer for them, so the activity does not look them up again."""
    if not upns:
        return AdminEvidence(admins=[])
    thresholds = case.thresholds
    return await _source("admin_sign_ins", unavailable, workflow.execute_activity_method(
        EvidenceActivities.admin_sign_ins,
        AdminSignInsInput(
            tenant_id=case.tenant_id, upns=upns, since=now - thresholds.lookback, until=now,
            failure_threshold=thresholds.bruteforce_failures_per_minute,
            success_within=thresholds.bruteforce_success_within, accounts=accounts or [],
            alert_raised=case.alert.created,
        ),
        start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
        summary=f"sign-ins of {', '.join(upns)}"[:200],
    ))


# --------------------------------------------------------------------------- version 2


async def _audit_log(case: CaseInput, now: datetime, unavailable: list[str], sign_ins: bool = False) -> AuditLog | None:
    """Every audit record the case reads, from one query (the first audit source that answers);
    `sign_ins`: the CloudAppEvents fallback also reads the connector actors' sign-ins."""
    thresholds = case.thresholds
    return await _source("audit_log", unavailable, workflow.execute_activity_method(
        EvidenceActivities.audit_log,
        AuditLogInput(
            tenant_id=case.tenant_id, since=now - AUDIT_HISTORY, lookback_start=now - thresholds.lookback, until=now,
            sign_ins=SignInThresholds(failure_threshold=thresholds.bruteforce_failures_per_minute,
                                      success_within=thresholds.bruteforce_success_within) if sign_ins else None,
        ),
        start_to_close_timeout=AUDIT_TIMEOUT, heartbeat_timeout=AUDIT_HEARTBEAT,
        retry_policy=retries.TENANT, summary="audit records: connectors and the admins' operations",
    ))


async def _directory(case: CaseInput, log: AuditLog, now: datetime) -> list[DirectoryAccount]:
    """The lookback's connector actors as the directory knows them (rule 10). Not an evidence source
    (docs/scenarios.md rule 8): when the lookup fails, only actors that are no UPN count as non-users."""
    lookback_start = now - case.thresholds.lookback
    removals = [c for c in log.connector_changes if connector_verb(c) == "remove" and lookback_start <= c.at <= now]
    upns = acting_admins(relevant_changes(log.connector_changes, lookback_start, now) + removals)
    if not upns:
        return []
    try:
        found: DirectoryAccounts = await workflow.execute_activity_method(
            EvidenceActivities.directory_accounts,
            DirectoryAccountsInput(tenant_id=case.tenant_id, upns=upns, alert_raised=case.alert.created),
            start_to_close_timeout=EXO_TIMEOUT, retry_policy=retries.TENANT,
            summary=f"directory accounts of {', '.join(upns)}"[:200],
        )
    except ActivityError:
        workflow.logger.warning("directory lookup failed; actors that are no UPN count as non-users")
        return [DirectoryAccount(upn=u) for u in upns if "@" not in u]
    return found.accounts


def _sweep(resolution: ConnectorResolution, log: AuditLog, accounts: list[DirectoryAccount]) -> Sweep:
    return Sweep(connectors=resolution.connectors, records=log.connector_changes,
                 admin_records=log.admin_records, accounts=accounts)


async def sweep_only(
    case: CaseInput, resolution: ConnectorResolution, now: datetime
) -> tuple[Sweep | None, list[str], AuditLog | None]:
    """An unresolved case still sweeps the other and the deleted connectors: (sweep, unavailable, log)."""
    unavailable: list[str] = []
    log = await _audit_log(case, now, unavailable)
    if log is None:
        return None, unavailable, None
    return _sweep(resolution, log, await _directory(case, log, now)), unavailable, log


def _sign_ins_of(log: AuditLog, upns: list[str]) -> AdminEvidence:
    """The acting admins' sign-in evidence as the audit query's CloudAppEvents fallback read it."""
    found = {fold(a.upn): a for a in log.sign_ins or []}
    return AdminEvidence(admins=[found[upn] for upn in upns if upn in found])


async def collect(case: CaseInput, resolution: ConnectorResolution, now: datetime) -> Evidence:
    """Every source for the resolved connector, and the sweep beyond it."""
    connector = resolution.connector
    assert connector is not None
    unavailable: list[str] = []
    fewer_calls = workflow.patched(FEWER_TENANT_CALLS)

    async def audit_and_admins() -> tuple[AuditLog | None, AdminEvidence | None, list[DirectoryAccount]]:
        # The acting admins are the actors of the connector's audit records, so admins wait.
        log = await _audit_log(case, now, unavailable, sign_ins=fewer_calls)
        if log is None:
            return None, None, []
        if not fewer_calls:
            admins, accounts = await asyncio.gather(
                _admin_sign_ins(case, _acting_admins(case, connector, log, now), now, unavailable),
                _directory(case, log, now))
            return log, admins, accounts
        accounts = await _directory(case, log, now)
        return log, await _connector_admins(case, connector, log, accounts, now, unavailable), accounts

    reads = (_domains_and_mail(case, connector, now, unavailable, fewer_calls), audit_and_admins(),
             _restricted(case, connector, unavailable))
    if fewer_calls:
        (domains, mail), (log, admins, accounts), restricted = await asyncio.gather(*reads)
        compromised = mail.compromised if mail else None
    else:
        (domains, mail), (log, admins, accounts), restricted, compromised = await asyncio.gather(
            *reads, _compromised(case, now, unavailable))
    return _evidence(connector, now, unavailable, domains, mail, restricted, compromised, admins,
                     **_audit_fields(resolution, log, accounts))


def _audit_fields(resolution: ConnectorResolution, log: AuditLog | None, accounts: list[DirectoryAccount]) -> dict[str, Any]:
    """`Evidence`'s audit fields from the audit log (none when it could not be read)."""
    connector = resolution.connector
    assert connector is not None
    if log is None:
        return {}
    return {
        "changes": connector_records(log.connector_changes, connector.name, connector.guid, connector.direction),
        "changes_source": log.source, "failed_audit_sources": log.failed_sources,
        "sweep": _sweep(resolution, log, accounts),
    }


def _acting_admins(case: CaseInput, connector: ConnectorConfig, log: AuditLog, now: datetime) -> list[str]:
    """The actors of the connector's audit records in the lookback."""
    mine = connector_records(log.connector_changes, connector.name, connector.guid, connector.direction)
    return acting_admins(relevant_changes(mine, now - case.thresholds.lookback, now))


async def _connector_admins(
    case: CaseInput, connector: ConnectorConfig, log: AuditLog, accounts: list[DirectoryAccount], now: datetime,
    unavailable: list[str],
) -> AdminEvidence | None:
    """The acting admins' sign-in evidence: from the audit log when its CloudAppEvents fallback read
    it, else read with the directory's `accounts` (no second lookup of a user)."""
    upns = _acting_admins(case, connector, log, now)
    if log.sign_ins is not None:
        return _sign_ins_of(log, upns)
    return await _admin_sign_ins(case, upns, now, unavailable, accounts)


# --------------------------------------------------------------------------- parallel evidence


@dataclass
class EarlyReads:
    """The reads a case starts with its connector's resolution (PARALLEL_EVIDENCE): the audit log and
    the directory's answer for its connector actors, and (MAIL_BESIDE_RESOLUTION) the mail of the
    connector the alert names by configuration."""

    now: datetime
    """The time every source of the case reads up to."""
    unavailable: list[str]
    """The case's sources that could not be read; the ones read after resolution join them."""
    audit: asyncio.Task[tuple[AuditLog | None, list[DirectoryAccount]]]
    mail: asyncio.Task[MailStats | None] | None = None
    """None: not started before the resolution. Its result None: the activity failed."""


def start_early_reads(case: CaseInput, now: datetime, mail: bool = False) -> EarlyReads:
    """Start the audit query (the CloudAppEvents fallback also reads the connector actors' sign-ins),
    then the directory lookup of its connector actors; with `mail`, the mail read too."""
    unavailable: list[str] = []

    async def audit() -> tuple[AuditLog | None, list[DirectoryAccount]]:
        log = await _audit_log(case, now, unavailable, sign_ins=True)
        return (None, []) if log is None else (log, await _directory(case, log, now))

    async def mail_ahead() -> MailStats | None:
        # A list of its own: the mail is a source of the case's evidence only once a connector is
        # resolved, and `_mail_and_domains` names it unavailable then.
        return await _source("mail_stats", [], _mail_activity(
            case, now, "", "mail through the connector the alert's configuration names", _resolve_input(case, now)))

    return EarlyReads(now, unavailable, asyncio.ensure_future(audit()),
                      asyncio.ensure_future(mail_ahead()) if mail else None)


def _mail_activity(
    case: CaseInput, now: datetime, connector_name: str, summary: str, resolve: ResolveConnectorInput | None = None
) -> Awaitable[MailStats]:
    return workflow.execute_activity_method(
        EvidenceActivities.mail_stats,
        MailStatsInput(
            tenant_id=case.tenant_id, connector_name=connector_name, now=now, lookback=case.thresholds.lookback,
            partner_domains=list(case.organization.partner_domains),
            compromised_per_hour=case.thresholds.compromised_sender_per_hour, alert_raised=case.alert.created,
            resolve=resolve,
        ),
        start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT, summary=summary[:200],
    )


async def _mail_and_domains(
    case: CaseInput, connector: ConnectorConfig, early: EarlyReads
) -> tuple[AcceptedDomains | None, MailStats | None]:
    """The connector's mail, which reads the accepted domains it classifies by itself: the read
    started with the resolution when it was for this connector, else a read now."""
    unavailable = early.unavailable
    ahead = await early.mail if early.mail is not None else None
    if early.mail is not None and ahead is None:  # the read beside the resolution failed after its retries
        unavailable.append("mail_stats")
        mail = None
    elif ahead is not None and ahead.connector_name == connector.name:
        mail = ahead
    else:  # not started, or the configuration named no connector (it was found another way)
        mail = await _source("mail_stats", unavailable, _mail_activity(
            case, early.now, connector.name, f"mail through {connector.name}, and the accepted domains"))
    if mail is None:
        unavailable += ["accepted_domains", "compromised_senders"]  # the same activity answers them
        return None, None
    return AcceptedDomains(domains=mail.accepted_domains or []), mail


async def sweep_beside_audit(
    resolution: ConnectorResolution, early: EarlyReads
) -> tuple[Sweep | None, list[str], AuditLog | None]:
    """`sweep_only` from the reads the case started with its resolution (a mail read among them
    found no connector, or one the resolution did not settle on: its answer is not evidence)."""
    log, accounts = await early.audit
    if early.mail is not None:
        await early.mail
    return (None if log is None else _sweep(resolution, log, accounts)), early.unavailable, log


async def collect_beside_audit(case: CaseInput, resolution: ConnectorResolution, early: EarlyReads) -> Evidence:
    """`collect` with the reads the case started with its resolution: the connector's mail (unless
    it started then) and restrictions once resolved, the acting admins' sign-ins once the directory
    answered."""
    connector = resolution.connector
    assert connector is not None
    now, unavailable = early.now, early.unavailable

    async def admins() -> tuple[AuditLog | None, AdminEvidence | None, list[DirectoryAccount]]:
        log, accounts = await early.audit
        if log is None:
            return None, None, []
        return log, await _connector_admins(case, connector, log, accounts, now, unavailable), accounts

    (domains, mail), (log, admin_evidence, accounts), restricted = await asyncio.gather(
        _mail_and_domains(case, connector, early), admins(), _restricted(case, connector, unavailable))
    compromised = mail.compromised if mail else None
    return _evidence(connector, now, unavailable, domains, mail, restricted, compromised, admin_evidence,
                     **_audit_fields(resolution, log, accounts))
