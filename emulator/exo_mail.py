"""Exchange cmdlets for what an attacker leaves beside connectors (docs/scenarios.md "The whole playbook"):
mail flow (transport) rules, mailbox forwarding, inbox rules and mailbox permissions.

Objects resolve as Exchange resolves `-Identity` (case-insensitively; mailboxes by UPN, alias, name,
address or Guid); an unknown one answers ManagementObjectNotFoundException. Writes append the
ExchangeAdmin audit record Exchange would.
"""

from __future__ import annotations

import re
from typing import Any

from emulator.cmdlet import ARGUMENT, Call, Cmdlet
from emulator.errors import ExoError, not_found_exo
from emulator.scenario import mailbox_rights
from emulator.state import utcnow
from emulator.timestamps import format_datetime

_SMTP = re.compile(r"^(?:smtp:)?([^@\s:]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$", re.IGNORECASE)
_HIDDEN = ("inbox_rules", "permissions")  # scenario sections inside a mailbox, not Get-Mailbox properties


# --------------------------------------------------------------------------- transport rules


def _transport_rule_out(rule: dict[str, Any]) -> dict[str, Any]:
    return {**rule, "Identity": rule["Name"]}


def _find_transport_rule(call: Call) -> dict[str, Any]:
    rule = call.tenant.find_transport_rule(call.params["Identity"])
    if rule is None:
        raise not_found_exo(call.params["Identity"])
    return rule


def _get_transport_rules(call: Call) -> list[dict[str, Any]]:
    if call.params.get("Identity"):
        return [_transport_rule_out(_find_transport_rule(call))]
    return [_transport_rule_out(r) for r in sorted(call.tenant.transport_rules, key=lambda r: r["Priority"])]


def _disable_transport_rule(call: Call) -> list[dict[str, Any]]:
    rule = _find_transport_rule(call)
    rule["State"] = "Disabled"
    rule["WhenChanged"] = format_datetime(utcnow())
    call.tenant.append_audit("Disable-TransportRule", rule["Name"], call.params, call.actor, call.client_ip)
    return []


# --------------------------------------------------------------------------- mailboxes


def _find_mailbox(call: Call, identity: str) -> dict[str, Any]:
    mailbox = call.tenant.find_mailbox(identity)
    if mailbox is None:
        raise not_found_exo(identity)
    return mailbox


def _mailbox_out(mailbox: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in mailbox.items() if k not in _HIDDEN}, "Identity": mailbox["Name"]}


def _get_mailboxes(call: Call) -> list[dict[str, Any]]:
    if call.params.get("Identity"):
        return [_mailbox_out(_find_mailbox(call, call.params["Identity"]))]
    size = call.params.get("ResultSize", 1000) or len(call.tenant.mailboxes)
    return [_mailbox_out(m) for m in call.tenant.mailboxes[:size]]


def _smtp_address(value: str | None) -> str | None:
    """ForwardingSmtpAddress as Exchange stores it (`smtp:` + address); `$null` or "" clears it."""
    if not value:
        return None
    match = _SMTP.match(value.strip())
    if match is None:
        raise ExoError(ARGUMENT, "Cannot process argument transformation on parameter 'ForwardingSmtpAddress'. "
                                 f"Cannot convert value \"{value}\" to type \"Microsoft.Exchange.Data.ProxyAddress\".")
    return f"smtp:{match[1]}"


def _set_mailbox(call: Call) -> list[dict[str, Any]]:
    mailbox = _find_mailbox(call, call.params["Identity"])
    upn = mailbox["UserPrincipalName"]
    changes: dict[str, Any] = {}
    if "ForwardingSmtpAddress" in call.params:
        changes["ForwardingSmtpAddress"] = _smtp_address(call.params["ForwardingSmtpAddress"])
    if "ForwardingAddress" in call.params:
        recipient = call.params["ForwardingAddress"]
        changes["ForwardingAddress"] = _find_mailbox(call, recipient)["Name"] if recipient else None
    if "DeliverToMailboxAndForward" in call.params:
        changes["DeliverToMailboxAndForward"] = call.params["DeliverToMailboxAndForward"]
    changed = {k: v for k, v in changes.items() if mailbox.get(k) != v}
    if not changed:
        call.warnings.append(f"The command completed successfully but no settings of '{upn}' have been modified.")
    mailbox.update(changed)
    call.tenant.append_audit("Set-Mailbox", upn, call.params, call.actor, call.client_ip)
    return []


# --------------------------------------------------------------------------- inbox rules


def _rule_owner(call: Call) -> tuple[dict[str, Any], str | None]:
    """The mailbox (`-Mailbox`, else the part of `-Identity` before `\\`) and the rule's name or id.

    Without either the cmdlet acts on the caller's own mailbox, which an application has not.
    """
    owner, identity = call.params.get("Mailbox"), call.params.get("Identity")
    name = identity
    if identity and "\\" in identity:
        owner_part, _, name = identity.partition("\\")
        owner = owner or owner_part
    return _find_mailbox(call, owner or call.actor), name


def _find_inbox_rule(call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    mailbox, name = _rule_owner(call)
    wanted = str(name).strip().casefold()
    rule = next((r for r in mailbox["inbox_rules"]
                 if wanted in (str(r["Name"]).casefold(), str(r["RuleIdentity"]).casefold())), None)
    if rule is None:
        raise not_found_exo(call.params["Identity"])
    return mailbox, rule


def _get_inbox_rules(call: Call) -> list[dict[str, Any]]:
    if call.params.get("Identity"):
        return [dict(_find_inbox_rule(call)[1])]
    mailbox, _ = _rule_owner(call)
    return [dict(r) for r in mailbox["inbox_rules"]]


def _disable_inbox_rule(call: Call) -> list[dict[str, Any]]:
    mailbox, rule = _find_inbox_rule(call)
    rule["Enabled"] = False
    object_id = f"{mailbox['UserPrincipalName']}\\{rule['Name']}"
    call.tenant.append_audit("Disable-InboxRule", object_id, call.params, call.actor, call.client_ip)
    return []


# --------------------------------------------------------------------------- mailbox permissions


def _rights(call: Call) -> list[str]:
    value = call.params["AccessRights"]
    try:
        if not isinstance(value, list):
            raise ValueError(value)
        return mailbox_rights(value)
    except ValueError:
        raise ExoError(ARGUMENT, "Cannot process argument transformation on parameter 'AccessRights'. Cannot convert "
                                 f"value \"{value}\" to type \"Microsoft.Exchange.Management.RecipientTasks."
                                 "MailboxRights[]\".") from None


def _get_mailbox_permissions(call: Call) -> list[dict[str, Any]]:
    mailbox = _find_mailbox(call, call.params["Identity"])
    user = call.params.get("User")
    return [
        {"Identity": mailbox["Name"], **entry}
        for entry in mailbox["permissions"]
        if user is None or str(entry["User"]).casefold() == user.strip().casefold()
    ]


def _remove_mailbox_permission(call: Call) -> list[dict[str, Any]]:
    mailbox = _find_mailbox(call, call.params["Identity"])
    upn, user, rights = mailbox["UserPrincipalName"], call.params["User"], _rights(call)
    deny = call.params.get("Deny", False)
    entry = next((e for e in mailbox["permissions"]
                  if str(e["User"]).casefold() == user.strip().casefold() and e["Deny"] == deny), None)
    if entry is None or not set(rights) & set(entry["AccessRights"]):
        call.warnings.append(f"Can't remove the access control entry on the object \"{upn}\" for account \"{user}\" "
                             "because the ACE doesn't exist on the object.")
    else:
        entry["AccessRights"] = [r for r in entry["AccessRights"] if r not in rights]
        if not entry["AccessRights"]:
            mailbox["permissions"].remove(entry)
    call.tenant.append_audit("Remove-MailboxPermission", upn, call.params, call.actor, call.client_ip)
    return []


# --------------------------------------------------------------------------- registry

CMDLETS = [
    Cmdlet("Get-TransportRule", {"Identity": "string"}, (), _get_transport_rules),
    Cmdlet("Disable-TransportRule", {"Identity": "string", "Confirm": "switch"}, ("Identity",), _disable_transport_rule),
    Cmdlet("Get-Mailbox", {"Identity": "string", "ResultSize": "size"}, (), _get_mailboxes),
    Cmdlet("Set-Mailbox", {"Identity": "string", "ForwardingSmtpAddress": "string", "ForwardingAddress": "string",
                           "DeliverToMailboxAndForward": "bool", "Confirm": "switch"}, ("Identity",), _set_mailbox),
    Cmdlet("Get-InboxRule", {"Mailbox": "string", "Identity": "string"}, (), _get_inbox_rules),
    Cmdlet("Disable-InboxRule", {"Identity": "string", "Mailbox": "string", "Confirm": "switch"}, ("Identity",),
           _disable_inbox_rule),
    Cmdlet("Get-MailboxPermission", {"Identity": "string", "User": "string"}, ("Identity",), _get_mailbox_permissions),
    Cmdlet("Remove-MailboxPermission", {"Identity": "string", "User": "string", "AccessRights": "multi",
                                        "Deny": "switch", "Confirm": "switch"},
           ("Identity", "User", "AccessRights"), _remove_mailbox_permission),
]
