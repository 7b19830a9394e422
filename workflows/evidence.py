"""Workflow-side evidence orchestration: resolve the alerted connector, then read every source.

Runs inside the case workflow, so it is deterministic: times come from the caller (`now`) or
`workflow.now()`, and activities run on the workflow's own task queue. Sources run in parallel;
one that still fails after its retries becomes an entry in `Evidence.unavailable` (grading turns
that into `evidence_unavailable` → needs_review), never a silent gap that reads as "clean".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.evidence import EvidenceActivities
    from workflows import metrics, retries
    from workflows.grading import acting_admins, relevant_changes
    from workflows.types import (
        AcceptedDomains,
        AdminEvidence,
        AdminSignInsInput,
        CaseInput,
        CompromisedSenders,
        CompromisedSendersInput,
        ConnectorChanges,
        ConnectorChangesInput,
        ConnectorConfig,
        ConnectorResolution,
        Evidence,
        MailStats,
        MailStatsInput,
        ResolveConnectorInput,
        RestrictedEntities,
        RestrictedEntitiesInput,
        TenantInput,
    )

T = TypeVar("T")

EXO_TIMEOUT = timedelta(seconds=60)
HUNTING_TIMEOUT = timedelta(minutes=2)
AUDIT_TIMEOUT = timedelta(minutes=10)
"""Graph audit log queries run for minutes in a real tenant; the activity polls and heartbeats."""
AUDIT_HEARTBEAT = timedelta(minutes=1)
AUDIT_HISTORY = timedelta(days=90)
"""Audit records older than the lookback are read too: a revert needs the value set before."""


async def _source(name: str, unavailable: list[str], call: Awaitable[T]) -> T | None:
    """The activity's result, or None with `name` recorded as unavailable once retries are spent."""
    try:
        return await call
    except ActivityError as failure:
        workflow.logger.warning("evidence source unavailable", extra={"source": name, "error": str(failure.cause)[:200]})
        unavailable.append(name)
        metrics.evidence_unavailable(name)
        return None


async def resolve_connector(case: CaseInput) -> ConnectorResolution:
    now = workflow.now()
    request = ResolveConnectorInput(
        tenant_id=case.tenant_id,
        ip_addresses=list(case.alert.ip_addresses),
        message_ids=[m.network_message_id for m in case.alert.messages],
        since=now - case.thresholds.lookback,
        until=now,
    )
    try:
        return await workflow.execute_activity_method(
            EvidenceActivities.resolve_connector,
            request,
            start_to_close_timeout=HUNTING_TIMEOUT,
            retry_policy=retries.TENANT,
            summary=f"resolve connector for alert {case.alert.alert_id}"[:200],
        )
    except ActivityError as failure:
        metrics.evidence_unavailable("resolve_connector")
        return ConnectorResolution(method="unavailable", reason=f"could not read the tenant: {failure.cause}"[:300])


async def collect_evidence(case: CaseInput, connector: ConnectorConfig, now: datetime) -> Evidence:
    tenant, thresholds = case.tenant_id, case.thresholds
    lookback_start = now - thresholds.lookback
    unavailable: list[str] = []

    async def domains_and_mail() -> tuple[AcceptedDomains | None, MailStats | None]:
        # Mail stats classify domains as accepted, partner or external, so they wait for the list.
        domains = await _source("accepted_domains", unavailable, workflow.execute_activity_method(
            EvidenceActivities.accepted_domains, TenantInput(tenant_id=tenant),
            start_to_close_timeout=EXO_TIMEOUT, retry_policy=retries.TENANT,
        ))
        mail = await _source("mail_stats", unavailable, workflow.execute_activity_method(
            EvidenceActivities.mail_stats,
            MailStatsInput(
                tenant_id=tenant, connector_name=connector.name, now=now, lookback=thresholds.lookback,
                accepted_domains=domains.domains if domains else [],
                partner_domains=list(case.organization.partner_domains),
            ),
            start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
            summary=f"mail through {connector.name}"[:200],
        ))
        return domains, mail

    async def changes_and_admins() -> tuple[ConnectorChanges | None, AdminEvidence | None]:
        # The acting admins are the accounts in the connector's audit records, so admins wait.
        changes = await _source("connector_changes", unavailable, workflow.execute_activity_method(
            EvidenceActivities.connector_changes,
            ConnectorChangesInput(
                tenant_id=tenant, connector_name=connector.name, connector_guid=connector.guid,
                direction=connector.direction, since=now - AUDIT_HISTORY, until=now,
            ),
            start_to_close_timeout=AUDIT_TIMEOUT, heartbeat_timeout=AUDIT_HEARTBEAT,
            retry_policy=retries.TENANT, summary=f"audit records of {connector.name}"[:200],
        ))
        if changes is None:
            return None, None
        upns = acting_admins(relevant_changes(changes.changes, lookback_start, now))
        if not upns:
            return changes, AdminEvidence(admins=[])
        admins = await _source("admin_sign_ins", unavailable, workflow.execute_activity_method(
            EvidenceActivities.admin_sign_ins,
            AdminSignInsInput(
                tenant_id=tenant, upns=upns, since=lookback_start, until=now,
                failure_threshold=thresholds.bruteforce_failures_per_minute,
                success_within=thresholds.bruteforce_success_within,
            ),
            start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
            summary=f"sign-ins of {', '.join(upns)}"[:200],
        ))
        return changes, admins

    restricted_call = _source("restricted_entities", unavailable, workflow.execute_activity_method(
        EvidenceActivities.restricted_entities,
        RestrictedEntitiesInput(tenant_id=tenant, connector_name=connector.name, connector_guid=connector.guid),
        start_to_close_timeout=EXO_TIMEOUT, retry_policy=retries.TENANT,
    ))
    compromised_call = _source("compromised_senders", unavailable, workflow.execute_activity_method(
        EvidenceActivities.compromised_senders,
        CompromisedSendersInput(
            tenant_id=tenant, since=lookback_start, until=now, per_hour=thresholds.compromised_sender_per_hour
        ),
        start_to_close_timeout=HUNTING_TIMEOUT, retry_policy=retries.TENANT,
    ))
    (domains, mail), (changes, admins), restricted, compromised = await asyncio.gather(
        domains_and_mail(), changes_and_admins(), restricted_call, compromised_call
    )
    restricted = restricted or RestrictedEntities(blocked_connector=False, blocked_senders=[])
    compromised = compromised or CompromisedSenders(object_ids=[], addresses=[])
    return Evidence(
        connector=connector,
        changes=changes.changes if changes else [],
        changes_source=changes.source if changes else "",
        mail=mail or MailStats(),
        accepted_domains=domains.domains if domains else [],
        blocked_connector=restricted.blocked_connector,
        blocked_senders=restricted.blocked_senders,
        admins=admins.admins if admins else [],
        compromised_senders=compromised.object_ids,
        compromised_sender_addresses=compromised.addresses,
        unavailable=sorted(unavailable),
        collected_at=now,
    )
