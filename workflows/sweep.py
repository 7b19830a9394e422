"""The whole playbook (docs/scenarios.md, version 2): every other connector, the deleted ones, and
what the suspect admins also did.

Pure and deterministic, like the rest of grading. None of these findings changes the verdict;
they widen a true positive's plan and are reported in every verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflows import audit
from workflows.audit import fold
from workflows.changes import NOT_CONFIGURATION, approval_for, change_summary, review
from workflows.types import (
    AuditEntry,
    ConnectorChange,
    ConnectorConfig,
    Finding,
    FindingId,
    Organization,
    OtherConnector,
    ReviewedChange,
    Subject,
    Suspect,
    Sweep,
    split_list,
)

KEPT_FOR_RECREATION = frozenset({"enabled", "comment"})
"""A deleted connector's last known properties keep Enabled and Comment: recreating it needs them."""


@dataclass(frozen=True)
class Directory:
    """Which actors are directory users (rule 10) and their object ids."""

    object_ids: dict[str, str | None]
    """Case-folded UPN -> object id; None for an actor the directory does not know."""

    @classmethod
    def of(cls, sweep: Sweep | None) -> Directory:
        return cls({fold(a.upn): a.object_id for a in (sweep.accounts if sweep else [])})

    def is_user(self, actor: str) -> bool:
        """Unknown to the lookup (it failed, or a case before version 2): counted as a user."""
        return self.object_ids.get(fold(actor), "") is not None

    def account(self, actor: str) -> Subject:
        return Subject(kind="account", id=self.object_ids.get(fold(actor)) or None, name=actor)


@dataclass(frozen=True)
class SweepResult:
    findings: list[Finding]
    others: list[OtherConnector]
    suspects: list[Suspect]
    """Every suspect admin: the given ones, then the actors behind the sweep's findings."""


def sweep(
    swept: Sweep,
    alerted: ConnectorConfig | None,
    organization: Organization,
    lookback_start: datetime,
    now: datetime,
    suspects: list[Suspect],
) -> SweepResult:
    """Findings for the other connectors, the deleted ones and the suspect admins' footprint.

    `suspects` are the alerted connector's acting admins that the v1 rules make suspect.
    """
    directory = Directory.of(swept)
    admins = {fold(a) for a in organization.connector_admins}
    known = {s.upn for s in suspects}

    def behind(change: ConnectorChange, ticket: str | None) -> bool:
        return not ticket and (fold(change.actor) not in admins or fold(change.actor) in known)

    findings: list[Finding] = []
    others: list[OtherConnector] = []
    acted: list[tuple[str, FindingId]] = []
    connector_history = audit.ConnectorHistory(swept.records)
    for connector in swept.connectors:
        if alerted is not None and fold(connector.guid) == fold(alerted.guid):
            continue
        records = connector_history.of(connector.name, connector.guid, connector.direction)
        history = review(records, connector, organization, lookback_start, now)
        suspicious = [r for r in history.changes if behind(r.change, r.ticket)]
        if suspicious:
            others.append(OtherConnector(connector=connector, changes=history.changes, records=records))
            findings.append(_other_connector(connector, suspicious, directory))
            acted += [(r.change.actor, "other_connector_suspicious") for r in suspicious]

    for removal in _removals(swept.records, lookback_start, now):
        if behind(removal, approval_for(removal, (), organization)):
            findings.append(_deleted(removal, connector_history, directory))
            acted.append((removal.actor, "connector_deleted"))

    everyone = _with_actors(suspects, acted, directory)
    findings += _footprint(swept.admin_records, {s.upn for s in everyone}, lookback_start, now, directory)
    return SweepResult(findings=findings, others=others, suspects=everyone)


def _with_actors(suspects: list[Suspect], acted: list[tuple[str, FindingId]], directory: Directory) -> list[Suspect]:
    """The suspects, each directory user among the actors added, with the findings behind them."""
    because = {s.upn: list(s.because) for s in suspects}
    object_ids = {s.upn: s.object_id for s in suspects}
    for actor, finding in acted:
        if directory.is_user(actor):
            reasons = because.setdefault(fold(actor), [])
            if finding not in reasons:
                reasons.append(finding)
            object_ids.setdefault(fold(actor), directory.object_ids.get(fold(actor)))
    return [Suspect(upn=upn, object_id=object_ids[upn], because=reasons) for upn, reasons in because.items()]


# --------------------------------------------------------------------------- connectors


def _accounts(changes: Iterable[AuditEntry], directory: Directory) -> list[Subject]:
    actors = dict.fromkeys(c.actor for c in changes if directory.is_user(c.actor))
    return [directory.account(a) for a in actors]


def _other_connector(connector: ConnectorConfig, suspicious: list[ReviewedChange], directory: Directory) -> Finding:
    changes = [r.change for r in suspicious]
    actors = list(dict.fromkeys(c.actor for c in changes))
    what = "created" if any(audit.connector_verb(c) == "new" for c in changes) else "changed"
    return Finding(
        id="other_connector_suspicious",
        summary=f"{connector.name} ({connector.direction}) was {what} by {', '.join(actors)} without an approved "
                "change, by an account that is not a connector admin or is suspect",
        evidence={"connector": connector.name, "direction": connector.direction, "guid": connector.guid,
                  "enabled": connector.enabled, "changes": [change_summary(c) for c in changes]},
        subjects=[Subject(kind="connector", id=connector.guid, name=connector.name), *_accounts(changes, directory)],
    )


def _removals(records: Iterable[ConnectorChange], lookback_start: datetime, now: datetime) -> list[ConnectorChange]:
    return [r for r in records if audit.connector_verb(r) == "remove" and lookback_start <= r.at <= now]


def _deleted(removal: ConnectorChange, connector_history: audit.ConnectorHistory, directory: Directory) -> Finding:
    name = str(removal.object_id or audit.parameter(removal, "Identity") or "").strip()
    direction = audit.direction_of(removal)
    earlier = [r for r in connector_history.of(name, "", direction, before=removal.at)
               if audit.connector_verb(r) in ("new", "set")]
    last_known: dict[str, Any] = {}
    for record in earlier:
        last_known.update({k: v for k, v in record.parameters.items()
                           if k.casefold() not in NOT_CONFIGURATION or k.casefold() in KEPT_FOR_RECREATION})
    return Finding(
        id="connector_deleted",
        summary=f"{removal.actor} deleted the {direction} connector {name} at {removal.at:%Y-%m-%d %H:%M}Z without "
                "an approved change" + ("" if last_known else "; no earlier record shows its properties"),
        evidence={"connector": name, "direction": direction, "last_known": last_known,
                  "last_known_from": [change_summary(r) for r in earlier], "changes": [change_summary(removal)]},
        subjects=[Subject(kind="connector", name=name), *_accounts([removal], directory)],
    )


# --------------------------------------------------------------------------- the admins' footprint


def _footprint(
    records: list[AuditEntry], suspects: set[str], lookback_start: datetime, now: datetime, directory: Directory
) -> list[Finding]:
    """One finding per record of a suspect admin (rule 12)."""
    rules = audit.same_objects(r for r in records if audit.is_operation(r, *audit.TRANSPORT_RULE_OPERATIONS))
    findings = []
    for record in records:
        if fold(record.actor) in suspects and lookback_start <= record.at <= now:
            found = _admin_finding(record, rules, directory.account(record.actor))
            if found is not None:
                findings.append(found)
    return findings


def _admin_finding(record: AuditEntry, rules: list[list[AuditEntry]], actor: Subject) -> Finding | None:
    when = f"at {record.at:%Y-%m-%d %H:%M}Z"
    done = change_summary(record)

    def found(id: FindingId, summary: str, subjects: list[Subject], **evidence: Any) -> Finding:
        return Finding(id=id, summary=f"{record.actor} {summary} {when}", subjects=[actor, *subjects],
                       evidence={**evidence, "actor": record.actor, "record": done})

    if audit.is_operation(record, *audit.TRANSPORT_RULE_OPERATIONS):
        named = str(record.object_id or audit.parameter(record, "Identity") or audit.parameter(record, "Name") or "")
        current = audit.current_name(next(g for g in rules if record in g)) or named
        return found("admin_transport_rule_change", f"ran {record.operation} on the mail flow rule {named}",
                     [Subject(kind="transport_rule", name=current)], rule=named, current_name=current)
    if mailbox := audit.mailbox_forwarding(record):
        forwarding = {p: audit.parameter(record, p) for p in audit.FORWARDING_PROPERTIES}
        return found("admin_mail_forwarding", f"set forwarding on {mailbox}",
                     [Subject(kind="mailbox", name=mailbox)], mailbox=mailbox,
                     forwarding={k: v for k, v in forwarding.items() if not audit.is_empty(v)})
    if forwarding_rule := audit.inbox_rule_forwarding(record):
        mailbox, rule = forwarding_rule
        targets = {p: audit.parameter(record, p) for p in audit.INBOX_RULE_FORWARDS}
        return found("admin_mail_forwarding", f"made the inbox rule {rule} of {mailbox} forward mail",
                     [Subject(kind="mailbox", name=mailbox), Subject(kind="inbox_rule", name=rule)],
                     mailbox=mailbox, rule=rule, forwarding={k: v for k, v in targets.items() if not audit.is_empty(v)})
    if audit.is_operation(record, audit.MAILBOX_PERMISSION):
        mailbox = str(audit.parameter(record, "Identity") or record.object_id or "").strip()
        grantee = str(audit.parameter(record, "User") or "").strip()
        rights = split_list(audit.parameter(record, "AccessRights"))
        return found("admin_mailbox_permission", f"gave {grantee} {', '.join(rights)} on {mailbox}",
                     [Subject(kind="mailbox", name=mailbox), Subject(kind="grantee", name=grantee),
                      *(Subject(kind="access_right", name=r) for r in rights)],
                     mailbox=mailbox, grantee=grantee, access_rights=rights)
    if audit.is_operation(record, audit.ROLE_GRANT):
        grantee, role = str(record.object_id or "").strip(), audit.role_name(record)
        return found("admin_role_granted", f"granted {grantee} the directory role {role}",
                     [Subject(kind="grantee", name=grantee), Subject(kind="role", name=role)],
                     grantee=grantee, role=role)
    if audit.is_operation(record, audit.ACCEPTED_DOMAIN):
        domain = str(record.object_id or audit.parameter(record, "DomainName") or audit.parameter(record, "Name") or "")
        return found("admin_accepted_domain_added", f"added the accepted domain {domain}",
                     [Subject(kind="domain", name=domain)], domain=domain)
    return None
