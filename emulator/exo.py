"""Exchange Online admin REST (`POST /adminapi/beta/{tenant}/InvokeCommand`): the cmdlets quell runs.

Parameters bind as in PowerShell (names case-insensitively, types checked, mandatory ones
required); anything Exchange would refuse answers 400 with the real reason nested under the
generic "Error executing cmdlet". Writes append the unified audit record Exchange would.
Connectors, restricted entities, accepted domains, the audit log and message trace live here;
transport rules, mailboxes, inbox rules and mailbox permissions in `emulator.exo_mail`.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from emulator import exo_mail
from emulator.cmdlet import ARGUMENT, Call, Cmdlet, Params, TraceRow
from emulator.errors import ExoError, not_found_exo
from emulator.state import DEFAULTS, AuditSession, ConnectorKind, TenantData, TenantState, utcnow
from emulator.timestamps import format_datetime
from workflows.timestamps import parse_iso
from workflows.types import MULTI_VALUED

BINDING = "System.Management.Automation.ParameterBindingException"
VALIDATION = "Microsoft.Exchange.Configuration.Tasks.TaskArgumentException"
READ_ONLY = {"IsValidated", "LastValidationTimestamp"}
ENUMS = {
    "ConnectorType": ("OnPremises", "Partner"),
    "TlsSettings": ("EncryptionOnly", "CertificateValidation", "DomainValidation"),
}
RECORD_TYPES = {"ExchangeAdmin": 1, "ExchangeItem": 2, "AzureActiveDirectory": 8, "AzureActiveDirectoryAccountLogon": 9}
MESSAGE_TRACE_WINDOW = timedelta(days=10)
MESSAGE_TRACE_RETENTION = timedelta(days=90)
WORKLOADS = {"AzureActiveDirectory": "AzureActiveDirectory", "AzureActiveDirectoryAccountLogon": "AzureActiveDirectory"}
SESSION_LIMITS = {"returnlargeset": 50_000, "returnnextpreviewpage": 5_000}
"""Records a Search-UnifiedAuditLog session serves at most, by SessionCommand."""


def invoke(state: TenantState, tenant: TenantData, body: Any, actor: str, client_ip: str,
           message_trace: list[TraceRow], continued: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the cmdlet a request body names; returns (value, warnings) or raises ExoError.
    `continued`: the request asks for a later page of an answer (only sessions keep answers)."""
    cmdlet_input = body.get("CmdletInput") if isinstance(body, dict) else None
    name = cmdlet_input.get("CmdletName") if isinstance(cmdlet_input, dict) else None
    if not isinstance(name, str) or not name:
        raise ExoError("Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                       "The request body must be {\"CmdletInput\": {\"CmdletName\": ..., \"Parameters\": {...}}}.")
    cmdlet = CMDLETS.get(name.casefold())
    if cmdlet is None:
        raise ExoError("System.Management.Automation.CommandNotFoundException",
                       f"The term '{name}' is not recognized as a name of a cmdlet, function, script file, or "
                       "executable program. Check the spelling of the name, or if a path was included, verify that "
                       "the path is correct and try again.")
    raw = cmdlet_input.get("Parameters", {})  # type: ignore[union-attr]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ExoError(BINDING, "Parameters must be a JSON object of parameter name to value.")
    call = Call(tenant, actor, client_ip, bind(cmdlet, raw), [], message_trace, _organization(tenant, state),
                state.audit_sessions, continued)
    return cmdlet.run(call), call.warnings


def _organization(tenant: TenantData, state: TenantState) -> str:
    return next((d for d in tenant.accepted_domains if d.endswith(".onmicrosoft.com")), state.tenant_id)


# --------------------------------------------------------------------------- binding


def bind(cmdlet: Cmdlet, raw: Params) -> Params:
    by_name = {p.casefold(): p for p in cmdlet.params}
    bound: Params = {}
    for given, value in raw.items():
        name = by_name.get(str(given).casefold())
        if name is None:
            raise ExoError(BINDING, f"A parameter cannot be found that matches parameter name '{given}'.")
        bound[name] = _convert(name, cmdlet.params[name], value)
    missing = [p for p in cmdlet.mandatory if bound.get(p) in (None, "", [])]
    if missing:
        raise ExoError(BINDING, "Cannot process command because of one or more missing mandatory parameters: "
                                f"{' '.join(missing)}.")
    return bound


def _refuse(name: str, value: Any, target: str, why: str = "") -> ExoError:
    return ExoError(ARGUMENT, f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
                              f"\"{value}\" to type \"{target}\".{' ' + why if why else ''}")


def _convert(name: str, kind: str, value: Any) -> Any:
    if kind in ("bool", "switch"):
        if not isinstance(value, bool):
            raise _refuse(name, value, "System.Boolean", "Boolean parameters accept only Boolean values and numbers, "
                                                          "such as $True, $False, 1 or 0.")
        return value
    if kind == "string":
        if value is not None and not isinstance(value, str):
            raise _refuse(name, value, "System.String")
        if value is not None and name in ENUMS:
            choice = next((c for c in ENUMS[name] if c.casefold() == value.casefold()), None)
            if choice is None:
                raise ExoError(ARGUMENT, f"Cannot bind parameter '{name}'. Cannot convert value \"{value}\" to type "
                                         f"\"{name}\". Valid values: {', '.join(ENUMS[name])}.")
            return choice
        return value
    if kind == "multi":
        return _multi(name, value)
    if kind == "datetime":
        when = _datetime(value)
        if when is None:
            raise _refuse(name, value, "System.DateTime")
        return when
    if kind == "size":
        if isinstance(value, str) and value.casefold() == "unlimited":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _refuse(name, value, "Microsoft.Exchange.Data.Unlimited`1[System.UInt32]")
        return value
    raise AssertionError(kind)


def _multi(name: str, value: Any) -> Any:
    """A multi-valued property: a list, a string (split on `,`), null, or {Add: [...], Remove: [...]}."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and value and {str(k).casefold() for k in value} <= {"add", "remove"}:
        return {str(k).casefold(): _multi(name, v) for k, v in value.items()}
    raise _refuse(name, value, "Microsoft.Exchange.Data.MultiValuedProperty`1[System.String]")


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    when = parse_iso(value)
    if when is None:
        try:
            when = datetime.combine(date.fromisoformat(value.strip()), datetime.min.time(), timezone.utc)
        except ValueError:
            return None
    return when


# --------------------------------------------------------------------------- connectors


def _settable(kind: ConnectorKind) -> dict[str, str]:
    kinds = {}
    for prop, default in DEFAULTS[kind].items():
        if prop not in READ_ONLY:
            multi = prop.casefold() in MULTI_VALUED
            kinds[prop] = "bool" if isinstance(default, bool) else "multi" if multi else "string"
    return {**kinds, "Name": "string"}


def _connector_out(connector: dict[str, Any]) -> dict[str, Any]:
    return {**connector, "Identity": connector["Name"], "Id": connector["Name"]}


def _find(call: Call, kind: ConnectorKind) -> dict[str, Any]:
    connector = call.tenant.find_connector(kind, call.params["Identity"])
    if connector is None:
        raise not_found_exo(call.params["Identity"])
    return connector


def _apply(connector: dict[str, Any], changes: Params) -> bool:
    changed = False
    for prop, value in changes.items():
        if isinstance(value, dict):  # {add, remove} on a multi-valued property
            current = list(connector.get(prop) or [])
            current += [v for v in value.get("add", []) if v not in current]
            value = [v for v in current if v not in value.get("remove", [])]
        if prop == "SenderIPAddresses":
            _check_ip_ranges(value)
        if connector.get(prop) != value:
            connector[prop] = value
            changed = True
    return changed


def _check_ip_ranges(values: list[str]) -> None:
    for text in values:
        try:
            if "-" in text:  # a range: first-last
                for bound in text.split("-", 1):
                    ipaddress.ip_address(bound.strip())
            else:
                ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise _refuse("SenderIPAddresses", text, "Microsoft.Exchange.Data.IPRange") from None


def _get_connectors(kind: ConnectorKind) -> Callable[[Call], list[dict[str, Any]]]:
    def run(call: Call) -> list[dict[str, Any]]:
        if call.params.get("Identity"):
            return [_connector_out(_find(call, kind))]
        return [_connector_out(c) for c in call.tenant.connectors(kind)]
    return run


def _set_connector(kind: ConnectorKind, operation: str) -> Callable[[Call], list[dict[str, Any]]]:
    def run(call: Call) -> list[dict[str, Any]]:
        connector = _find(call, kind)
        object_id = connector["Name"]
        changes = {k: v for k, v in call.params.items() if k not in ("Identity", "Confirm")}
        new_name = changes.get("Name")
        if new_name is not None:
            other = call.tenant.find_connector(kind, new_name)
            if other is not None and other is not connector:
                raise ExoError("Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
                               f"An object with the name '{new_name}' already exists.")
        if _apply(connector, changes):
            connector["WhenChanged"] = format_datetime(utcnow())
        else:
            call.warnings.append(f"The command completed successfully but no settings of '{object_id}' have been modified.")
        call.tenant.append_audit(operation, object_id, call.params, call.actor, call.client_ip)
        return []
    return run


def _new_connector(kind: ConnectorKind, operation: str) -> Callable[[Call], list[dict[str, Any]]]:
    def run(call: Call) -> list[dict[str, Any]]:
        name = call.params["Name"]
        if call.tenant.find_connector(kind, name) is not None:
            raise ExoError("Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
                           f"An object with the name '{name}' already exists.")
        now = format_datetime(utcnow())
        connector = {**json.loads(json.dumps(DEFAULTS[kind])), "Guid": str(uuid.uuid4()), "Name": name,
                     "WhenCreated": now, "WhenChanged": now}
        _apply(connector, {k: v for k, v in call.params.items() if k != "Confirm"})
        call.tenant.connectors(kind).append(connector)
        call.tenant.append_audit(operation, name, call.params, call.actor, call.client_ip)
        return [_connector_out(connector)]
    return run


def _remove_connector(kind: ConnectorKind, operation: str) -> Callable[[Call], list[dict[str, Any]]]:
    def run(call: Call) -> list[dict[str, Any]]:
        connector = _find(call, kind)
        call.tenant.connectors(kind).remove(connector)
        call.tenant.append_audit(operation, connector["Name"], call.params, call.actor, call.client_ip)
        return []
    return run


# --------------------------------------------------------------------------- restricted entities, domains


def _matching(items: list[dict[str, Any]], key: str, wanted: str | None) -> list[dict[str, Any]]:
    """Entries whose `key` equals `wanted` case-insensitively (all of them when nothing is wanted)."""
    return [b for b in items if wanted is None or str(b[key]).casefold() == wanted.casefold()]


def _remove_entry(call: Call, items: list[dict[str, Any]], key: str, cmdlet: str) -> list[dict[str, Any]]:
    wanted = call.params[key]
    found = _matching(items, key, wanted)
    if not found:
        raise not_found_exo(wanted)
    items.remove(found[0])
    call.tenant.append_audit(cmdlet, wanted, call.params, call.actor, call.client_ip)
    return []


def _get_blocked_connectors(call: Call) -> list[dict[str, Any]]:
    return [dict(b) for b in _matching(call.tenant.blocked_connectors, "ConnectorId", call.params.get("ConnectorId"))]


def _remove_blocked_connector(call: Call) -> list[dict[str, Any]]:
    return _remove_entry(call, call.tenant.blocked_connectors, "ConnectorId", "Remove-BlockedConnector")


def _get_blocked_senders(call: Call) -> list[dict[str, Any]]:
    return [dict(b) for b in _matching(call.tenant.blocked_senders, "SenderAddress", call.params.get("SenderAddress"))]


def _remove_blocked_sender(call: Call) -> list[dict[str, Any]]:
    return _remove_entry(call, call.tenant.blocked_senders, "SenderAddress", "Remove-BlockedSenderAddress")


def _get_accepted_domains(call: Call) -> list[dict[str, Any]]:
    domains = call.tenant.accepted_domains
    out = [
        {"Name": d, "DomainName": d, "Identity": d, "DomainType": "Authoritative", "Default": i == 0,
         "InitialDomain": d.endswith(".onmicrosoft.com") and not d.endswith(".mail.onmicrosoft.com"),
         "AuthenticationType": "Managed"}
        for i, d in enumerate(domains)
    ]
    wanted = call.params.get("Identity")
    if wanted is None:
        return out
    found = [d for d in out if d["Name"].casefold() == wanted.casefold()]
    if not found:
        raise not_found_exo(wanted)
    return found


# --------------------------------------------------------------------------- audit log, message trace


def _search_audit_log(call: Call) -> list[dict[str, Any]]:
    """Without a session: the newest ResultSize records. With SessionId and SessionCommand: each
    run of the same command answers the session's next ResultSize records, ResultIndex counting
    on across runs and ResultCount every match, until the session's limit (ReturnLargeSet 50,000,
    ReturnNextPreviewPage 5,000, newest first); then the answers are empty."""
    p = call.params
    start, end = p["StartDate"], p["EndDate"]
    if start > end:
        raise ExoError(VALIDATION, "The StartDate should be earlier than the EndDate.")
    size = p.get("ResultSize", 100) or 5000
    if size > 5000:
        raise ExoError(VALIDATION, "The value of ResultSize must be between 1 and 5000.")
    command = str(p.get("SessionCommand") or "").casefold()
    if command and command not in SESSION_LIMITS:
        raise ExoError(ARGUMENT, f"Cannot bind parameter 'SessionCommand'. Cannot convert value \"{p['SessionCommand']}\" "
                                 "to type \"UnifiedAuditSessionCommand\". Specify one of the following enumerator names "
                                 "and try again: ReturnLargeSet, ReturnNextPreviewPage")
    if p.get("SessionId") and command:
        return _session_page(call, p["SessionId"], SESSION_LIMITS[command], size)
    found = _audit_matches(call)[:size]
    return [_audit_out(record, i + 1, len(found), call.organization) for i, record in enumerate(found)]


def _session_page(call: Call, session_id: str, limit: int, size: int) -> list[dict[str, Any]]:
    session = call.audit_sessions.get(session_id)
    if session is None:
        found = _audit_matches(call)
        session = AuditSession([_audit_out(r, i + 1, len(found), call.organization) for i, r in enumerate(found[:limit])])
        call.audit_sessions[session_id] = session
    if not call.continued:
        session.answer = session.records[session.served:session.served + size]
        session.served += len(session.answer)
    return session.answer


def _audit_matches(call: Call) -> list[dict[str, Any]]:
    """The audit records the call's parameters select, newest first."""
    p = call.params
    start, end = p["StartDate"], p["EndDate"]
    filters = [
        ({o.casefold() for o in p.get("Operations", [])}, "Operation"),
        ({u.casefold() for u in p.get("UserIds", [])}, "UserIds"),
    ]
    objects = {o.casefold() for o in p.get("ObjectIds", [])}
    found = []
    for record in call.tenant.audit_log:
        when = parse_iso(str(record.get("CreationDate", "")))
        if when is None or not start <= when <= end:
            continue
        if any(wanted and str(record.get(field, "")).casefold() not in wanted for wanted, field in filters):
            continue
        audit = record.get("AuditData", {})
        if objects and str(audit.get("ObjectId", "")).casefold() not in objects:
            continue
        if p.get("RecordType") and str(record.get("RecordType", "")).casefold() != p["RecordType"].casefold():
            continue
        if p.get("FreeText") and p["FreeText"].casefold() not in json.dumps(audit).casefold():
            continue
        found.append((when, record))
    found.sort(key=lambda item: item[0], reverse=True)
    return [record for _, record in found]


def _audit_out(record: dict[str, Any], index: int, count: int, organization: str) -> dict[str, Any]:
    audit = record.get("AuditData", {})
    record_type = str(record.get("RecordType", "ExchangeAdmin"))
    identity = str(audit.get("Id") or uuid.uuid5(uuid.NAMESPACE_URL, f"{record.get('CreationDate')}/{record.get('Operation')}/{json.dumps(audit, sort_keys=True)}"))
    data = {
        "CreationTime": str(record.get("CreationDate", "")).removesuffix("Z"),
        "Id": identity,
        "Operation": record.get("Operation"),
        "OrganizationId": organization,
        "RecordType": RECORD_TYPES.get(record_type, record_type),
        "ResultStatus": "Success" if record_type in WORKLOADS else "True",
        "UserKey": record.get("UserIds"),
        "UserType": 2,
        "Version": 1,
        "Workload": WORKLOADS.get(record_type, "Exchange"),
        "UserId": record.get("UserIds"),
        **audit,
    }
    return {
        "RecordType": record_type,
        "CreationDate": record.get("CreationDate"),
        "UserIds": record.get("UserIds"),
        "Operations": record.get("Operation"),
        "AuditData": json.dumps(data),
        "ResultIndex": index,
        "ResultCount": count,
        "Identity": identity,
        "IsValid": True,
        "ObjectState": "Unchanged",
    }


def trace_status(row: dict[str, Any]) -> str:
    """Message trace Status from an EmailEvents row's DeliveryAction / DeliveryLocation."""
    action = str(row.get("DeliveryAction") or "").casefold()
    location = str(row.get("DeliveryLocation") or "").casefold()
    if location in ("failed", "dropped"):
        return "Failed"
    if location in ("junk folder", "quarantine") or action in ("junked", "blocked"):
        return "FilteredAsSpam"
    return "Delivered"


def trace_rows(email_events: list[dict[str, Any]]) -> list[TraceRow]:
    """EmailEvents rows as message trace shows them, newest first: made once, every call filters them."""
    rows = []
    for row in email_events:
        when = parse_iso(str(row.get("Timestamp", "")))
        if when is None:
            continue
        rows.append((when, {
            "MessageId": row.get("InternetMessageId") or f"<{row.get('NetworkMessageId')}@emulator.local>",
            "Received": format_datetime(when),
            "SenderAddress": row.get("SenderMailFromAddress") or row.get("SenderFromAddress"),
            "RecipientAddress": row.get("RecipientEmailAddress"),
            "Subject": row.get("Subject") or "",
            "Status": trace_status(row),
            "ToIP": None,
            "FromIP": row.get("SenderIPv4") or row.get("SenderIPv6"),
            "Size": 0,
            "MessageTraceId": row.get("NetworkMessageId"),
        }))
    rows.sort(key=lambda r: r[1]["Received"], reverse=True)
    return rows


def _message_trace(call: Call) -> list[dict[str, Any]]:
    p = call.params
    now = utcnow()
    end = p.get("EndDate") or now
    start = p.get("StartDate") or end - timedelta(hours=48)
    if start > end:
        raise ExoError(VALIDATION, "The StartDate should be earlier than the EndDate.")
    if end - start > MESSAGE_TRACE_WINDOW:
        raise ExoError(VALIDATION, "The time range between StartDate and EndDate can't exceed 10 days.")
    if start < now - MESSAGE_TRACE_RETENTION:
        raise ExoError(VALIDATION, "The StartDate can't be older than 90 days.")
    size = p.get("ResultSize", 1000) or 5000
    if size > 5000:
        raise ExoError(VALIDATION, "The value of ResultSize must be between 1 and 5000.")
    senders = {s.casefold() for s in p.get("SenderAddress", [])}
    recipients = {r.casefold() for r in p.get("RecipientAddress", [])}
    statuses = {s.casefold() for s in p.get("Status", [])}
    message_ids = set(p.get("MessageId", []))
    window = {"StartDate": format_datetime(start), "EndDate": format_datetime(end)}  # once, not per row
    found = []
    for when, trace in call.message_trace:
        if not start <= when <= end:
            continue
        if senders and str(trace["SenderAddress"] or "").casefold() not in senders:
            continue
        if recipients and str(trace["RecipientAddress"] or "").casefold() not in recipients:
            continue
        if any(p.get(key) and trace[key] != p[key] for key in ("FromIP", "ToIP", "MessageTraceId")):
            continue
        if p.get("Subject") and p["Subject"].casefold() not in trace["Subject"].casefold():
            continue
        if statuses and trace["Status"].casefold() not in statuses:
            continue
        if message_ids and trace["MessageId"] not in message_ids:
            continue
        found.append(trace)
        if len(found) == size:
            break
    return [{"Organization": call.organization, **t, **window, "Index": i} for i, t in enumerate(found)]


# --------------------------------------------------------------------------- registry


def _registry() -> dict[str, Cmdlet]:
    cmdlets = []
    for kind, noun in (("inbound", "InboundConnector"), ("outbound", "OutboundConnector")):
        settable = _settable(kind)  # type: ignore[arg-type]
        cmdlets += [
            Cmdlet(f"Get-{noun}", {"Identity": "string"}, (), _get_connectors(kind)),  # type: ignore[arg-type]
            Cmdlet(f"Set-{noun}", {"Identity": "string", "Confirm": "switch", **settable}, ("Identity",),
                   _set_connector(kind, f"Set-{noun}")),  # type: ignore[arg-type]
            Cmdlet(f"New-{noun}", {"Confirm": "switch", **settable},
                   ("Name", "SenderDomains") if kind == "inbound" else ("Name",),
                   _new_connector(kind, f"New-{noun}")),  # type: ignore[arg-type]
            Cmdlet(f"Remove-{noun}", {"Identity": "string", "Confirm": "switch"}, ("Identity",),
                   _remove_connector(kind, f"Remove-{noun}")),  # type: ignore[arg-type]
        ]
    cmdlets += [
        Cmdlet("Get-BlockedConnector", {"ConnectorId": "string"}, (), _get_blocked_connectors),
        Cmdlet("Remove-BlockedConnector", {"ConnectorId": "string", "Reason": "string", "Confirm": "switch"},
               ("ConnectorId", "Reason"), _remove_blocked_connector),
        Cmdlet("Get-BlockedSenderAddress", {"SenderAddress": "string"}, (), _get_blocked_senders),
        Cmdlet("Remove-BlockedSenderAddress", {"SenderAddress": "string", "Reason": "string", "Confirm": "switch"},
               ("SenderAddress",), _remove_blocked_sender),
        Cmdlet("Get-AcceptedDomain", {"Identity": "string"}, (), _get_accepted_domains),
        Cmdlet("Search-UnifiedAuditLog", {
            "StartDate": "datetime", "EndDate": "datetime", "Operations": "multi", "RecordType": "string",
            "UserIds": "multi", "ObjectIds": "multi", "FreeText": "string", "ResultSize": "size",
            "SessionId": "string", "SessionCommand": "string", "Formatted": "switch",
        }, ("StartDate", "EndDate"), _search_audit_log),
        Cmdlet("Get-MessageTraceV2", {
            "StartDate": "datetime", "EndDate": "datetime", "SenderAddress": "multi", "RecipientAddress": "multi",
            "FromIP": "string", "ToIP": "string", "MessageId": "multi", "MessageTraceId": "string",
            "Status": "multi", "Subject": "string", "SubjectFilterType": "string", "ResultSize": "size",
            "StartingRecipientAddress": "string",
        }, (), _message_trace),
        *exo_mail.CMDLETS,
    ]
    return {c.name.casefold(): c for c in cmdlets}


CMDLETS = _registry()
