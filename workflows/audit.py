"""Reading unified audit log records: which operations the playbook asks for, which records count,
and what object each record names (docs/scenarios.md "New audit records the responder reads").

Pure: the evidence activities use it to pick records, grading to read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from workflows.types import AuditEntry, ConnectorChange, Direction

CONNECTOR_OPERATIONS = [
    f"{verb}-{direction}Connector" for verb in ("New", "Set", "Remove") for direction in ("Inbound", "Outbound")
]
TRANSPORT_RULE_OPERATIONS = ("New-TransportRule", "Set-TransportRule", "Enable-TransportRule")
MAILBOX_FORWARDING = "Set-Mailbox"
INBOX_RULE_OPERATIONS = ("New-InboxRule", "Set-InboxRule")
MAILBOX_PERMISSION = "Add-MailboxPermission"
ROLE_GRANT = "Add member to role."
ACCEPTED_DOMAIN = "New-AcceptedDomain"
ADMIN_OPERATIONS = [
    *TRANSPORT_RULE_OPERATIONS, MAILBOX_FORWARDING, *INBOX_RULE_OPERATIONS, MAILBOX_PERMISSION, ROLE_GRANT,
    ACCEPTED_DOMAIN,
]
"""The suspect admins' footprint: the operations besides connector changes that one case reads."""
AUDIT_OPERATIONS = [*CONNECTOR_OPERATIONS, *ADMIN_OPERATIONS]
AUDIT_RECORD_TYPES = ["exchangeAdmin", "azureActiveDirectory"]
"""Graph auditLogRecordType values of those operations (role grants are directory records)."""

FAILED_RESULTS = frozenset({"false", "failed", "failure"})
FORWARDING_PROPERTIES = ("ForwardingSmtpAddress", "ForwardingAddress")
INBOX_RULE_FORWARDS = ("ForwardTo", "ForwardAsAttachmentTo", "RedirectTo")
ROLE_NAME_PROPERTY = "Role.DisplayName"


def fold(value: Any) -> str:
    return str(value or "").strip().casefold()


def failed(audit_data: Mapping[str, Any]) -> bool:
    """Rule 1: a record whose ResultStatus is False, Failed or Failure changed nothing."""
    return fold(audit_data.get("ResultStatus")) in FAILED_RESULTS


def is_operation(record: AuditEntry, *operations: str) -> bool:
    return fold(record.operation) in {fold(o) for o in operations}


def parameter(record: AuditEntry, name: str) -> Any:
    """A parameter's value, matching the name case-insensitively as PowerShell does (None if absent)."""
    return next((value for key, value in record.parameters.items() if key.casefold() == name.casefold()), None)


def is_empty(value: Any) -> bool:
    """Rule 11: absent, null, "", "$null" or [] (a list of such values too)."""
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value is None or fold(value) in ("", "$null")


def names(record: AuditEntry) -> set[str]:
    """The names a record calls its object by (case-folded): ObjectId, Identity and a new Name."""
    return {fold(n) for n in (record.object_id, parameter(record, "Identity"), parameter(record, "Name"))
            if isinstance(n, str) and n.strip()}


def current_name(records: list[AuditEntry]) -> str:
    """The name an object has after these records of it (oldest first): the last `Name` one set,
    else the name the latest one used."""
    name = ""
    for record in records:
        new = parameter(record, "Name")
        if isinstance(new, str) and new.strip():
            name = new.strip()
        elif not name:
            name = str(record.object_id or parameter(record, "Identity") or "").strip()
    return name


def same_objects(records: Iterable[AuditEntry]) -> list[list[AuditEntry]]:
    """Records grouped by the object they name, a rename linking the old name to the new one
    (rule 4), each group oldest first, groups in order of their first record."""
    groups: list[tuple[set[str], list[AuditEntry]]] = []
    for record in sorted(records, key=lambda r: r.at):
        known = names(record)
        joined = [g for g in groups if g[0] & known]
        merged_names, merged = set(known), [record]
        for group in joined:
            merged_names |= group[0]
            merged = group[1] + merged
            groups.remove(group)
        groups.append((merged_names, sorted(merged, key=lambda r: r.at)))
    return [members for _, members in sorted(groups, key=lambda g: g[1][0].at)]


# --------------------------------------------------------------------------- connectors


def connector_verb(change: AuditEntry) -> str:
    """`set` for Set-InboundConnector (likewise `new`, `remove`); "" for anything but a connector."""
    verb, _, noun = change.operation.partition("-")
    return verb.casefold() if noun.casefold() in ("inboundconnector", "outboundconnector") else ""


def direction_of(change: AuditEntry) -> Direction:
    return "outbound" if "outbound" in change.operation.casefold() else "inbound"


def connector_records(
    records: Iterable[ConnectorChange], name: str, guid: str, direction: Direction
) -> list[ConnectorChange]:
    """The records of this connector, oldest first (`ConnectorHistory.of`)."""
    return ConnectorHistory(records).of(name, guid, direction)


class ConnectorHistory:
    """Connector records, newest first, each with its direction and the names it calls its
    connector by, worked out once: the sweep asks for every connector of the tenant, and `names`
    is the costly part (in the workflow sandbox every `isinstance` is a Python call)."""

    def __init__(self, records: Iterable[ConnectorChange]) -> None:
        self._entries = [(record, direction_of(record), names(record))
                         for record in sorted(records, key=lambda r: r.at, reverse=True) if connector_verb(record)]

    def of(self, name: str, guid: str, direction: Direction, before: datetime | None = None) -> list[ConnectorChange]:
        """The records of this connector (of those from before `before`, when given), oldest first.

        A record names its connector by ObjectId, Identity or the Name parameter. Walking from the
        newest record back, every name a matching record used joins the connector's aliases, so the
        records from before a rename (Identity = old name, Name = new name) still match.
        """
        aliases = {fold(name), fold(guid)} - {""}
        kept: list[ConnectorChange] = []
        for record, towards, called in self._entries:
            if before is not None and record.at >= before:
                continue
            if towards == direction and called & aliases:
                aliases |= called
                kept.append(record)
        return sorted(kept, key=lambda r: r.at)


# --------------------------------------------------------------------------- the admins' footprint


def mailbox_forwarding(record: AuditEntry) -> str | None:
    """The mailbox a forwarding Set-Mailbox points elsewhere (rule 11), else None."""
    if not is_operation(record, MAILBOX_FORWARDING):
        return None
    if all(is_empty(parameter(record, p)) for p in FORWARDING_PROPERTIES):
        return None
    mailbox = parameter(record, "Identity") or record.object_id
    return str(mailbox).strip() if mailbox else None


def inbox_rule(record: AuditEntry) -> tuple[str, str]:
    """(mailbox, rule name) of a New-/Set-InboxRule: the `Mailbox` parameter, else the part of
    `Identity` before `\\`, else the actor's own mailbox; the `Name` parameter, else the part after."""
    identity = str(parameter(record, "Identity") or "")
    owner, sep, rule = identity.rpartition("\\")
    mailbox = parameter(record, "Mailbox") or (owner if sep else "") or record.actor
    name = parameter(record, "Name") or (rule if sep else identity)
    return str(mailbox).strip(), str(name).strip()


def inbox_rule_forwarding(record: AuditEntry) -> tuple[str, str] | None:
    """(mailbox, rule) of a New-/Set-InboxRule that forwards or redirects (rule 11), else None."""
    if not is_operation(record, *INBOX_RULE_OPERATIONS):
        return None
    if all(is_empty(parameter(record, p)) for p in INBOX_RULE_FORWARDS):
        return None
    return inbox_rule(record)


def role_name(record: AuditEntry) -> str:
    """The role an `Add member to role.` record granted, without the quotes it may arrive in (rule 13)."""
    value = next((v for k, v in record.modified.items() if k.casefold() == ROLE_NAME_PROPERTY.casefold()), "")
    return str(value or "").strip().strip('"').strip()
