"""A connector's audit history as grading reads it: what is a creation or a modification, which
change an approved change record covers, and who made the changes (the acting admins).

Pure and deterministic. `v2` selects the version 2 reading of "modification" (any parameter but
Identity, Enabled, Comment and PowerShell's switches); cases begun before version 2 replay with
the first release's list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from workflows.audit import connector_verb, fold
from workflows.audit import names as audit_names
from workflows.types import AuditEntry, ChangeHistory, ConnectorChange, ConnectorConfig, Organization, ReviewedChange

NOT_CONFIGURATION = frozenset(
    p.casefold()
    for p in (
        "Identity", "Enabled", "Comment",
        # PowerShell's common parameters and the cmdlets' switches (rule 2)
        "Confirm", "Force", "WhatIf", "Verbose", "Debug", "ErrorAction", "WarningAction",
        "InformationAction", "ErrorVariable", "WarningVariable", "InformationVariable", "OutVariable",
        "OutBuffer", "PipelineVariable", "DomainController",
    )
)
"""Parameters that neither modify a connector nor are restored by a revert (rules 2, version 2)."""

V1_MODIFYING_PARAMETERS = frozenset(
    p.casefold()
    for p in (
        "Name", "SenderDomains", "RecipientDomains", "SenderIPAddresses", "SmartHosts",
        "TlsSenderCertificateName", "TlsDomain", "ConnectorType", "RestrictDomainsToIPAddresses",
    )
)
"""The first release's modifying parameters: only cases begun before version 2 still read them."""


def is_creation(change: ConnectorChange) -> bool:
    return connector_verb(change) == "new"


def is_modification(change: ConnectorChange, v2: bool = True) -> bool:
    """A Set- record that sets configuration (not only Enabled, Comment or switches)."""
    if connector_verb(change) != "set":
        return False
    if v2:
        return any(name.casefold() not in NOT_CONFIGURATION for name in change.parameters)
    return any(name.casefold() in V1_MODIFYING_PARAMETERS for name in change.parameters)


def relevant_changes(
    changes: Iterable[ConnectorChange], lookback_start: datetime, now: datetime, v2: bool = True
) -> list[ConnectorChange]:
    """Creations and modifications within the lookback, oldest first."""
    return sorted(
        (c for c in changes
         if lookback_start <= c.at <= now and (is_creation(c) or is_modification(c, v2))),
        key=lambda c: c.at,
    )


def acting_admins(changes: Iterable[ConnectorChange]) -> list[str]:
    """The accounts that created or changed the connector (lower-cased UPNs), in first-seen order."""
    seen: list[str] = []
    for change in changes:
        if (actor := fold(change.actor)) and actor not in seen:
            seen.append(actor)
    return seen


def approval_for(change: ConnectorChange, connector: Iterable[str], organization: Organization) -> str | None:
    """The ticket of the approved change record covering this change's connector (known by any of
    the given names, or a name the record uses), actor and time."""
    names = {fold(n) for n in connector} | audit_names(change)
    for approved in organization.approved_changes:
        if (
            fold(approved.connector) in names
            and fold(approved.by) == fold(change.actor)
            and approved.from_ <= change.at <= approved.to
        ):
            return approved.ticket
    return None


def review(
    changes: Iterable[ConnectorChange],
    connector: ConnectorConfig,
    organization: Organization,
    lookback_start: datetime,
    now: datetime,
    v2: bool = True,
) -> ChangeHistory:
    """The lookback's creations and modifications of one connector, each with its approval and
    whether its actor was expected: the reading grading decides on and planning acts on."""
    admins = {fold(a) for a in organization.connector_admins}
    reviewed = []
    for change in relevant_changes(changes, lookback_start, now, v2):
        ticket = approval_for(change, (connector.name, connector.guid), organization)
        unexpected = not ticket and fold(change.actor) not in admins
        reviewed.append(ReviewedChange(change=change, ticket=ticket, unexpected_actor=unexpected))
    return ChangeHistory(changes=reviewed, acting_admins=acting_admins(r.change for r in reviewed))


def change_summary(change: AuditEntry, ticket: str | None = None) -> dict[str, Any]:
    """A record as a finding's evidence shows it: when, what, who, which parameters, from where."""
    summary: dict[str, Any] = {
        "at": change.at.isoformat(),
        "operation": change.operation,
        "actor": change.actor,
        "parameters": sorted(change.parameters),
    }
    if change.client_ip:
        summary["client_ip"] = change.client_ip
    if ticket:
        summary["ticket"] = ticket
    return summary
