"""Scenario files (docs: docs/scenarios.md, a public contract): load, shift, expand, validate.

`load_scenario` reads the YAML with `yaml.safe_load`, moves every ISO 8601 date-time in the file
by (real now - `now`) rounded down to a whole hour, expands table generators, adds the audit
log to CloudAppEvents, and validates every block. A malformed file raises `ScenarioError`
naming the file and the field.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emulator.principals import DIRECTORY_ROLES_BY_DEFAULT, EXCHANGE_APP_ROLES, GRAPH_APP_ROLES
from emulator.timestamps import format_datetime
from workflows.timestamps import as_utc, parse_iso
from workflows.types import VerdictKind

TOP_LEVEL_KEYS = (
    "id", "description", "now", "organization", "tenant", "audit_log", "tables", "alert",
    "intake", "approvals", "faults", "quotas", "mode", "expected", "app",
)
TENANT_SECTIONS = (
    "inbound_connectors", "outbound_connectors", "blocked_connectors", "blocked_senders",
    "users", "conditional_access_policies", "transport_rules", "mailboxes",
)
GENERATOR_KEYS = {"repeat", "start", "every", "row"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh])$")
_PLACEHOLDER = re.compile(r"\{i\}|\{cycle:([^{}]*)\}")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


# The contract's vocabularies (docs/scenarios.md "Vocabularies" and "The whole playbook"): a scenario
# may name any of them, whether or not quell produces it yet (tests/emulator checks quell's are among them).
ContractFinding = Literal[
    "p1_p2_mismatch", "empty_sender_object_id", "volume_spike", "internal_recipients", "junk_delivery_spike",
    "unprovisioned_sender_domain", "sender_ip_not_on_premises", "external_spray", "supply_chain_targeting",
    "malicious_url", "malicious_attachment", "connector_created", "connector_modified", "change_by_unexpected_actor",
    "change_approved", "connector_blocked", "admin_bruteforce_success", "admin_unusual_location",
    "compromised_sender_accounts", "evidence_unavailable", "connector_unresolved",
    # version 2
    "other_connector_suspicious", "connector_deleted", "admin_transport_rule_change", "admin_mail_forwarding",
    "admin_mailbox_permission", "admin_role_granted", "admin_accepted_domain_added",
]
ContractAction = Literal[
    "classify_alert", "comment_alert", "disable_connector", "remove_connector", "revert_connector_change",
    "reset_admin_password", "revoke_sessions", "require_admin_mfa", "unblock_connector", "unblock_sender",
    # version 2
    "disable_transport_rule", "remove_mail_forwarding", "remove_mailbox_permission", "remove_role_assignment",
]
ACTION_KINDS: tuple[str, ...] = ContractAction.__args__  # type: ignore[attr-defined]
MAILBOX_RIGHTS = ("ChangeOwner", "ChangePermission", "DeleteItem", "ExternalAccount", "FullAccess", "ReadPermission")
"""Get-MailboxPermission's AccessRights values."""


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- blocks


class ApprovedChange(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ticket: str
    connector: str
    by: str
    from_: datetime = Field(alias="from")
    to: datetime


class Organization(Strict):
    on_premises_ip_ranges: list[str] = []
    connector_admins: list[str] = []
    expected_high_volume_connectors: list[str] = []
    partner_domains: list[str] = []
    approved_changes: list[ApprovedChange] = []

    @field_validator("on_premises_ip_ranges")
    @classmethod
    def _ip_ranges(cls, ranges: list[str]) -> list[str]:
        for item in ranges:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return ranges


class User(BaseModel):
    """A Graph user plus the names of the directory roles it holds (other Graph properties kept)."""

    model_config = ConfigDict(extra="allow")

    id: str
    userPrincipalName: str
    displayName: str = ""
    accountEnabled: bool = True
    roles: list[str] = []


def _require(items: list[dict[str, Any]], key: str, what: str) -> list[dict[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ValueError(f"item {index}: a {what} needs a non-empty string {key}")
    return items


def mailbox_rights(rights: list[str]) -> list[str]:
    """AccessRights in Exchange's spelling; raises ValueError naming a value Exchange does not know."""
    spelled = []
    for right in rights:
        known = next((r for r in MAILBOX_RIGHTS if r.casefold() == right.casefold()), None)
        if known is None:
            raise ValueError(f"{right!r} is not a mailbox access right ({', '.join(MAILBOX_RIGHTS)})")
        spelled.append(known)
    return spelled


class MailboxPermission(Strict):
    """An explicit grant as Get-MailboxPermission shows it (inherited entries are not modelled)."""

    User: str
    AccessRights: list[str] = Field(min_length=1)
    IsInherited: Literal[False] = False
    Deny: bool = False
    InheritanceType: str = "All"

    @field_validator("AccessRights")
    @classmethod
    def _rights(cls, rights: list[str]) -> list[str]:
        return mailbox_rights(rights)


class Mailbox(BaseModel):
    """Get-Mailbox properties (others kept as given), the mailbox's inbox rules and its permissions."""

    model_config = ConfigDict(extra="allow")

    UserPrincipalName: str
    ForwardingSmtpAddress: str | None = None
    ForwardingAddress: str | None = None
    DeliverToMailboxAndForward: bool = False
    inbox_rules: list[dict[str, Any]] = []
    """Get-InboxRule output properties; `Name` is required, `Identity` defaults to `<UPN>\\<Name>`."""
    permissions: list[MailboxPermission] = []

    @field_validator("inbox_rules")
    @classmethod
    def _inbox_rules(cls, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _require(rules, "Name", "inbox rule")


class Tenant(Strict):
    id: str
    accepted_domains: list[str] = []
    users: list[User] = []
    inbound_connectors: list[dict[str, Any]] = []
    outbound_connectors: list[dict[str, Any]] = []
    blocked_connectors: list[dict[str, Any]] = []
    blocked_senders: list[dict[str, Any]] = []
    conditional_access_policies: list[dict[str, Any]] = []
    transport_rules: list[dict[str, Any]] = []
    """Get-TransportRule output properties (version 2)."""
    mailboxes: list[Mailbox] = []
    """Get-Mailbox properties with inbox_rules and permissions (version 2)."""

    @field_validator("transport_rules")
    @classmethod
    def _transport_rules(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _require(items, "Name", "transport rule")

    @field_validator("mailboxes")
    @classmethod
    def _mailboxes(cls, mailboxes: list[Mailbox]) -> list[Mailbox]:
        seen: set[str] = set()
        for index, mailbox in enumerate(mailboxes):
            upn = mailbox.UserPrincipalName.casefold()
            if upn in seen:
                raise ValueError(f"item {index}: a second mailbox for {mailbox.UserPrincipalName}")
            seen.add(upn)
        return mailboxes

    @field_validator("inbound_connectors", "outbound_connectors")
    @classmethod
    def _connectors(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _require(items, "Name", "connector")

    @field_validator("blocked_connectors")
    @classmethod
    def _blocked_connectors(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _require(items, "ConnectorId", "blocked connector")

    @field_validator("blocked_senders")
    @classmethod
    def _blocked_senders(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _require(items, "SenderAddress", "blocked sender")


class AuditRecord(BaseModel):
    """A unified audit log record; `AuditData` is the parsed AuditData JSON."""

    model_config = ConfigDict(extra="allow")

    CreationDate: datetime
    Operation: str
    UserIds: str
    RecordType: str = "ExchangeAdmin"
    AuditData: dict[str, Any] = {}


class Intake(Strict):
    via: Literal["webhook", "sentinel", "poll"] = "webhook"
    repeat: int = Field(1, ge=1)


Answer = Literal["approve", "reject", "ignore"]


class Approvals(Strict):
    approvers: list[str] = []
    analysts: list[str] = []
    """Read-only analysts: they sign in to the emulator (user tokens) but may not approve."""
    default: Answer = "ignore"
    by_action: dict[str, Answer] = {}
    """Keys: an action kind, or `kind:target` for one target (the more specific key wins)."""

    @field_validator("by_action")
    @classmethod
    def _keys(cls, by_action: dict[str, Answer]) -> dict[str, Answer]:
        for key in by_action:
            kind = key.partition(":")[0]
            if kind not in ACTION_KINDS:
                raise ValueError(f"{key!r}: unknown action kind {kind!r} (a key is KIND or KIND:TARGET)")
        return by_action

    def answer(self, kind: str, target: str) -> Answer:
        """How the analysts answer an action on `target` (targets compare case-insensitively)."""
        for key, answer in self.by_action.items():
            key_kind, colon, key_target = key.partition(":")
            if colon and key_kind == kind and key_target.strip().casefold() == target.strip().casefold():
                return answer
        return self.by_action.get(kind, self.default)


class App(Strict):
    """quell extension (docs/scenarios.md): the app registration's grants. It holds every app role
    and directory role quell needs unless named here (e.g. "User.RevokeSessions.All",
    "Exchange.ManageAsApp", "Exchange Administrator")."""

    withhold: list[str] = []

    @field_validator("withhold")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        known = {*GRAPH_APP_ROLES, *EXCHANGE_APP_ROLES, *DIRECTORY_ROLES_BY_DEFAULT}
        if unknown := sorted(set(names) - known):
            raise ValueError(f"unknown grant(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return names


_FAULT_API = re.compile(r"^(exo:[A-Za-z]+-[A-Za-z0-9]+|graph:(GET|POST|PATCH|PUT|DELETE) /\S*)$")


class Fault(Strict):
    api: str
    status: int | None = Field(None, ge=400, le=599)
    times: int | None = Field(None, ge=1)
    match: str | None = None
    retry_after_s: float = Field(1, ge=0)
    effect: Literal["ignore"] | None = None

    @field_validator("api")
    @classmethod
    def _api(cls, api: str) -> str:
        if not _FAULT_API.match(api):
            raise ValueError(f"{api!r} is neither 'exo:CMDLET' nor 'graph:METHOD /path'")
        return api

    @model_validator(mode="after")
    def _status_or_effect(self) -> Fault:
        if (self.status is None) == (self.effect is None):
            raise ValueError("give exactly one of status (an error answer) or effect: ignore")
        return self


class Quota(Strict):
    """At most `calls` calls in any running window of `window_s` seconds, per tenant and app."""

    calls: int = Field(ge=1)
    window_s: float = Field(gt=0)


class Quotas(Strict):
    """quell extension (docs/scenarios.md `quotas`): a quota per API family; a family left out is unlimited.
    `hunting` is POST /security/runHuntingQuery, `security` Graph's alerts and incidents
    (/security/alerts_v2, /security/incidents), `graph` every other Graph call, `message_trace`
    Get-MessageTraceV2 and Get-MessageTraceDetailV2, `exchange` every other InvokeCommand."""

    hunting: Quota | None = None
    security: Quota | None = None
    graph: Quota | None = None
    exchange: Quota | None = None
    message_trace: Quota | None = None


MICROSOFT_QUOTAS = Quotas(
    hunting=Quota(calls=45, window_s=60),  # Defender XDR advanced hunting API: 45 calls a minute per tenant
    security=Quota(calls=150, window_s=60),  # Graph security detections and incidents: 150 a minute per app per tenant
    graph=Quota(calls=3500, window_s=10),  # Entra ID (identity and access): 3,500 resource units per 10 s, smallest tenants
    message_trace=Quota(calls=100, window_s=300),  # Get-MessageTraceV2: 100 in a 5-minute running window
)  # no documented rate for the rest of InvokeCommand: `exchange` is not limited
"""Microsoft's documented limits (docs/storms.md, "Microsoft's quotas"): the `microsoft` preset."""
QUOTA_PRESETS = {"microsoft": MICROSOFT_QUOTAS, "off": Quotas()}


def quotas_named(value: Any) -> Any:
    """A preset name (`microsoft`, `off`) as its quotas; anything else as given."""
    if isinstance(value, str):
        if value not in QUOTA_PRESETS:
            raise ValueError(f"{value!r} is no quota preset ({', '.join(QUOTA_PRESETS)}) or mapping of family to quota")
        return QUOTA_PRESETS[value]
    return value


class ExcludedAction(Strict):
    """An `actions_exclude` item for one target: no executed action of that kind on that target."""

    kind: ContractAction
    target: str


class Expected(Strict):
    verdict: VerdictKind | None = None
    case_status: Literal["completed", "needs_manual"] | None = None
    """quell extension (docs/scenarios.md): the case's final status."""
    connector: str | None = None
    findings_include: list[ContractFinding] = []
    findings_exclude: list[ContractFinding] = []
    actions: list[dict[str, Any]] = []
    actions_exclude: list[ContractAction | ExcludedAction] = []
    order: list[tuple[ContractAction, ContractAction]] = []
    alert: dict[str, Any] | None = None
    tenant: dict[str, Any] | None = None

    @field_validator("actions")
    @classmethod
    def _actions(cls, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, action in enumerate(actions):
            if "kind" in action and action["kind"] not in ACTION_KINDS:
                raise ValueError(f"item {index}: unknown action kind {action['kind']!r}")
        return actions

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, tenant: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(tenant or {}) - set(TENANT_SECTIONS) - {"id", "accepted_domains"})
        if unknown:
            raise ValueError(f"unknown tenant section(s): {', '.join(unknown)}")
        return tenant


class Scenario(Strict):
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    description: str = ""
    now: datetime
    organization: Organization = Organization()
    tenant: Tenant
    audit_log: list[AuditRecord] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    alert: dict[str, Any]
    intake: Intake | None = None
    approvals: Approvals | None = None
    faults: list[Fault] = []
    quotas: Quotas = Quotas()
    """Off unless the scenario names them (docs/scenarios.md `quotas`)."""
    mode: Literal["enforce", "dry_run"] = "enforce"
    expected: Expected = Expected()
    app: App = App()

    _quota_preset = field_validator("quotas", mode="before")(quotas_named)

    @field_validator("tables")
    @classmethod
    def _tables(cls, tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        for name, rows in tables.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a table name")
            for index, row in enumerate(rows):
                stamp = row.get("Timestamp")
                if stamp is not None and (not isinstance(stamp, str) or parse_iso(stamp) is None):
                    raise ValueError(f"{name}[{index}].Timestamp: {stamp!r} is not an ISO 8601 date-time")
        return tables

    @field_validator("alert")
    @classmethod
    def _alert(cls, alert: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(alert.get("id"), str) or not alert["id"]:
            raise ValueError("the alert needs a non-empty string id")
        return alert


# --------------------------------------------------------------------------- loading


def load_scenario(source: str | Path, real_now: datetime | None = None) -> Scenario:
    """Load a scenario from a file path or from YAML text, shifted so that `now` is about real now."""
    label, text = _read(source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{label}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{label}: a scenario is a YAML mapping of the blocks in docs/scenarios.md")
    unknown = sorted(str(key) for key in data if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise ScenarioError(
            f"{label}: unknown top-level key(s): {', '.join(unknown)} (allowed: {', '.join(TOP_LEVEL_KEYS)})"
        )
    now = data.get("now")
    authored_now = as_utc(now) if isinstance(now, datetime) else parse_iso(now) if isinstance(now, str) else None
    if authored_now is None:
        raise ScenarioError(f"{label}: now: required, an ISO 8601 date-time such as 2026-11-20T10:00:00Z")
    real = as_utc(real_now or datetime.now(timezone.utc))
    delta = timedelta(hours=(real - authored_now) // timedelta(hours=1))
    data = shift_timestamps(data, delta)
    tables = data.get("tables")
    if tables is not None:
        if not isinstance(tables, dict):
            raise ScenarioError(f"{label}: tables: a mapping of table name to a list of rows")
        data["tables"] = {name: _expand_table(label, str(name), rows) for name, rows in tables.items()}
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(_describe(label, error)) from None
    users = [u.model_dump() for u in scenario.tenant.users]
    audit_rows = [audit_cloud_app_event(r.model_dump(mode="json"), users) for r in scenario.audit_log]
    if audit_rows:
        scenario.tables["CloudAppEvents"] = [*scenario.tables.get("CloudAppEvents", []), *audit_rows]
    return scenario


def _read(source: str | Path) -> tuple[str, str]:
    if isinstance(source, Path):
        return str(source), _read_file(source)
    if "\n" not in source and source.strip().endswith((".yaml", ".yml")):
        return source, _read_file(Path(source))
    return "<scenario text>", source


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror or error}") from None


def shift_timestamps(value: Any, delta: timedelta) -> Any:
    """Every ISO 8601 date-time (string or YAML timestamp) at any depth, moved by `delta`."""
    if isinstance(value, dict):
        return {key: shift_timestamps(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [shift_timestamps(item, delta) for item in value]
    if isinstance(value, datetime):
        return format_datetime(as_utc(value) + delta)
    if isinstance(value, date):
        return value.isoformat()  # a date alone is no date-time: kept, as text like the rest
    if isinstance(value, str):
        parsed = parse_iso(value)
        return format_datetime(parsed + delta) if parsed is not None else value
    return value


def _expand_table(label: str, name: str, rows: Any) -> list[Any]:
    if not isinstance(rows, list):
        raise ScenarioError(f"{label}: tables.{name}: a list of rows")
    expanded: list[Any] = []
    for index, item in enumerate(rows):
        where = f"{label}: tables.{name}[{index}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: a row is a mapping of column to value")
        if "repeat" in item:
            expanded.extend(_generate(where, item))
        else:
            expanded.append(item)
    return expanded


def _generate(where: str, generator: dict[str, Any]) -> list[dict[str, Any]]:
    unknown = sorted(set(generator) - GENERATOR_KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown generator key(s) {', '.join(unknown)} (allowed: repeat, start, every, row)")
    repeat = generator["repeat"]
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 0:
        raise ScenarioError(f"{where}.repeat: a non-negative whole number")
    start = parse_iso(generator["start"]) if isinstance(generator.get("start"), str) else None
    if start is None:
        raise ScenarioError(f"{where}.start: required, an ISO 8601 date-time (the Timestamp of row 0)")
    step = _duration(f"{where}.every", generator.get("every", "0s"))
    row = generator.get("row")
    if not isinstance(row, dict):
        raise ScenarioError(f"{where}.row: required, a mapping of column to value")
    if "Timestamp" in row:
        raise ScenarioError(f"{where}.row.Timestamp: a generator row takes its Timestamp from start and every")
    return [
        {"Timestamp": format_datetime(start + step * i), **substitute(row, i)} for i in range(repeat)
    ]


def _duration(where: str, text: Any) -> timedelta:
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ScenarioError(f"{where}: {text!r} is not a duration such as 7s, 0.1s or 15m")
    try:
        micros = Decimal(match[1]) * _UNIT_SECONDS[match[2]] * 1_000_000
    except InvalidOperation:
        raise ScenarioError(f"{where}: {text!r} is not a duration") from None
    return timedelta(microseconds=int(micros))


def substitute(value: Any, i: int) -> Any:
    """`{i}` and `{cycle:a,b,c}` in every string at any depth; any other brace text is literal."""
    if isinstance(value, dict):
        return {key: substitute(item, i) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, i) for item in value]
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            if match[1] is None:
                return str(i)
            choices = match[1].split(",")
            return choices[i % len(choices)]

        return _PLACEHOLDER.sub(one, value)
    return value


def audit_cloud_app_event(record: dict[str, Any], users: list[dict[str, Any]]) -> dict[str, Any]:
    """The CloudAppEvents row of one audit record (JSON-shaped record, users as Graph dicts)."""
    actor = str(record.get("UserIds", "")).casefold()
    user = next((u for u in users if str(u.get("userPrincipalName", "")).casefold() == actor), None)
    return {
        "Timestamp": record["CreationDate"],
        "ActionType": record["Operation"],
        "RawEventData": record.get("AuditData", {}),
        "AccountObjectId": user["id"] if user else "",
        "AccountDisplayName": user.get("displayName", "") if user else "",
    }


def _describe(label: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        problems.append(f"{path or '(top level)'}: {item['msg']}")
    return f"{label}: " + "; ".join(problems)
