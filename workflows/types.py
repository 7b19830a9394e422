"""Types that cross the workflow boundary: case input, evidence, findings, action parameters,
plan, approvals, notifications, report. Workflows and activities both import them from here;
nothing here imports an activity.

Every model is a frozen pydantic model (or a mutable one where the workflow accumulates state)
serialised by `temporalio.contrib.pydantic.pydantic_data_converter`. Nothing here holds a
secret: credentials live only in the worker's settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

Direction = Literal["inbound", "outbound"]
Mode = Literal["enforce", "dry_run"]
VerdictKind = Literal["true_positive", "benign_positive", "false_positive", "needs_review"]

FindingId = Literal[
    "p1_p2_mismatch",
    "empty_sender_object_id",
    "volume_spike",
    "internal_recipients",
    "junk_delivery_spike",
    "unprovisioned_sender_domain",
    "sender_ip_not_on_premises",
    "external_spray",
    "supply_chain_targeting",
    "malicious_url",
    "malicious_attachment",
    "connector_created",
    "connector_modified",
    "change_by_unexpected_actor",
    "change_approved",
    "connector_blocked",
    "admin_bruteforce_success",
    "admin_unusual_location",
    "compromised_sender_accounts",
    "evidence_unavailable",
    "connector_unresolved",
    # The whole playbook (docs/scenarios.md, version 2): other connectors and the suspect admins' footprint.
    "other_connector_suspicious",
    "connector_deleted",
    "admin_transport_rule_change",
    "admin_mail_forwarding",
    "admin_mailbox_permission",
    "admin_role_granted",
    "admin_accepted_domain_added",
]

ActionKind = Literal[
    "classify_alert",
    "comment_alert",
    "disable_connector",
    "remove_connector",
    "revert_connector_change",
    "reset_admin_password",
    "revoke_sessions",
    "require_admin_mfa",
    "unblock_connector",
    "unblock_sender",
    "disable_transport_rule",
    "remove_mail_forwarding",
    "remove_mailbox_permission",
    "remove_role_assignment",
]

Stage = Literal["contain", "eradicate", "recover", "harden", "report"]
PolicyKind = Literal["auto", "approve", "two_person", "never"]
ActionStatus = Literal[
    "planned",
    "awaiting_approval",
    "rejected",
    "expired",
    "done",
    "already_done",
    "failed",
    "skipped",
    "dry_run",
]
CaseStatus = Literal["running", "completed", "needs_manual"]
CaseStage = Literal[
    "resolving", "collecting", "grading", "awaiting_approval", "remediating", "reporting", "closed"
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- organization


class ApprovedChange(Frozen):
    """A change record (e.g. from a ticketing system) that authorises a connector change."""

    ticket: str
    connector: str
    by: str
    from_: datetime = Field(alias="from")
    to: datetime

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Organization(Frozen):
    """What the organization knows that no API holds (mirrors docs/scenarios.md `organization`)."""

    on_premises_ip_ranges: list[str] = []
    connector_admins: list[str] = []
    expected_high_volume_connectors: list[str] = []
    partner_domains: list[str] = []
    approved_changes: list[ApprovedChange] = []


class Thresholds(Frozen):
    """Grading thresholds; defaults are the playbook's (docs/scenarios.md "Default thresholds")."""

    lookback: timedelta = timedelta(days=7)
    mail_per_hour: int = 100
    baseline_factor: float = 5.0
    indicator_min_messages: int = 10
    junk_min_messages: int = 50
    junk_min_ratio: float = 0.2
    spray_min_domains: int = 50
    compromised_sender_per_hour: int = 100
    bruteforce_failures_per_minute: int = 100
    bruteforce_success_within: timedelta = timedelta(seconds=10)
    unusual_location_min_signins: int = 5
    unusual_location_max_share: float = 0.2


class HistoryLimits(Frozen):
    """How big one run of a case may grow (docs/storms.md, "Bounded history"). Temporal refuses a
    history past 51,200 events or 50 MB; a case continues as new, carrying its state, at the first
    safe point after its run passes either limit here (or Temporal suggests it)."""

    continue_after_events: int = Field(default=2_000, ge=100, le=40_000)
    """Small runs replay fast after a worker loses one (docs/storms.md); Temporal takes at most
    10,000 signals per run and suggests a new run at 4,096 events."""
    continue_after_bytes: int = Field(default=8 * 1024 * 1024, ge=4 * 1024 * 1024, le=40 * 1024 * 1024)
    """At least twice Temporal's 2 MB payload limit: the state a new run starts with never reaches it."""
    write_back_batch: int = Field(default=100, ge=1, le=1000)
    """Alerts one write-back activity (`action.alert-write-backs`) takes."""


class ApprovalPolicy(Frozen):
    """Who may approve what, and how long a request waits.

    A case carries one in its input, but since signed approvals (docs/security.md) the workflow
    reads only the timing from it (remind, escalate, expire): who may approve, with which keys,
    and which kinds need approval come from the worker's settings (`Trust`), because whoever
    can start a workflow writes its input.
    """

    approvers: list[str] = []
    by_action: dict[str, PolicyKind] = {
        "classify_alert": "auto",
        "comment_alert": "auto",
        "remove_connector": "two_person",
    }
    default: PolicyKind = "approve"
    remind_every: timedelta = timedelta(minutes=30)
    escalate_after_reminders: int = 2
    expire_after: timedelta = timedelta(hours=8)

    def for_action(self, kind: str) -> PolicyKind:
        return self.by_action.get(kind, self.default)


class ApproverKey(Frozen):
    """An approver's account and one Ed25519 public key their decisions are signed with
    (`ed25519:<base64 of the 32-byte key>`, as `quell keys init` prints it). An account may
    have several entries, one per key."""

    account: str
    public_key: str


class Trust(BaseModel):
    """What the worker's settings say about approvals now (the `approvals.trust` activity's
    result): accounts, their public keys, the approvals API's public key, the policy per kind and
    the time bounds of a signature. Public keys only, never a secret."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    approvers: list[str] = []
    """Accounts that may decide (case-folded)."""
    keys: list[ApproverKey] = []
    api_key: str | None = None
    """The approvals API's public key: it signs for any of `approvers` (the caller it authenticated)."""
    by_action: dict[str, PolicyKind] = {}
    default: PolicyKind = "approve"
    allow_unsigned: bool = False
    """Accept unsigned decisions from `approvers` (demo and emulator scenarios only)."""
    window: timedelta = timedelta(minutes=15)
    """A decision signed longer ago than this when it arrives is refused."""
    max_skew: timedelta = timedelta(minutes=2)
    """A decision signed further than this in the future (the signer's clock ahead) is refused."""

    def for_action(self, kind: str) -> PolicyKind:
        return self.by_action.get(kind, self.default)


# --------------------------------------------------------------------------- alert and case input


class AnalyzedMessage(Frozen):
    network_message_id: str
    sender_ip: str | None = None
    p1_sender: str | None = None
    p2_sender: str | None = None
    recipient: str | None = None


class AlertRef(Frozen):
    """The part of a Defender alert the case needs, normalised by intake."""

    alert_id: str
    tenant_id: str
    title: str = "Suspicious connector activity"
    severity: str = "unknown"
    created: datetime | None = None
    ip_addresses: list[str] = []
    messages: list[AnalyzedMessage] = []
    connector_hint: str | None = None
    """The connector's name, when the alert names it (generic alerts)."""
    connector_domain: str | None = None
    """The alert's connector domain (seed 001: "copy the Connector domain and IP address values")."""
    source: str = "webhook"


class AbsorbedAlert(BaseModel):
    """The `alert_received` signal: an alert joins a running case by id. Its fields are a subset of
    AlertRef's, so a worker of the release before decodes it too (as an AlertRef with defaults), and
    it ignores the rest, so the whole AlertRefs that histories of that release carry decode as well."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alert_id: str
    tenant_id: str


class CaseInput(Frozen):
    """Everything the case needs that is not read from the tenant. No credentials."""

    tenant_id: str
    alert: AlertRef
    organization: Organization = Organization()
    thresholds: Thresholds = Thresholds()
    policy: ApprovalPolicy = ApprovalPolicy()
    mode: Mode = "enforce"
    mfa_report_only: bool = True
    """Create the admin-MFA conditional access policy report-only (reviewed before enforcing)."""
    related_cases: list[str] = []
    """Closed cases for the same tenant and key within `intake.related_window`, as
    `workflow_id@run_id`, newest first (filled by intake; the report lists them)."""
    history: HistoryLimits = HistoryLimits()
    carried: CarriedCase | None = None
    """Set only by the case itself when it continues as new: the state its earlier run handed on."""


# --------------------------------------------------------------------------- tenant reads
# The evidence activities' inputs and results, and the Evidence the workflow assembles from them.


class Result(BaseModel):
    """An activity's result, or a model inside one. Replay decodes the results stored in old
    histories into today's models, so a field dropped since must not fail that decoding: unknown
    fields are ignored (AdminSignIns results once carried `roles` and `bruteforce`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class SharedReadInput(Frozen):
    """The input of an evidence activity whose tenant-wide reads the tenant's cases share
    (activities/tenant_cache.py)."""

    alert_raised: datetime | None = None
    """When the case's alert was raised: a tenant-wide read that started since may serve the case
    (docs/storms.md, "Tenant calls"); None: the case reads for itself."""


class ConnectorConfig(Result):
    """One connector as Get-Inbound/OutboundConnector reports it."""

    guid: str
    name: str
    direction: Direction
    enabled: bool
    connector_type: str | None = None
    when_created: datetime | None = None
    when_changed: datetime | None = None
    properties: dict[str, Any] = {}
    """All cmdlet output properties (JSON-safe), kept for revert and the report."""


class ConnectorResolution(Result):
    connector: ConnectorConfig | None = None
    candidates: list[str] = []
    method: str = ""
    reason: str = ""
    connectors: list[ConnectorConfig] = []
    """Every inbound and outbound connector when the case started (the sweep reads them)."""


MULTI_VALUED = frozenset(
    name.casefold()
    for name in (
        # Set-InboundConnector
        "SenderDomains", "SenderIPAddresses", "AssociatedAcceptedDomains", "TrustedOrganizations",
        "EFSkipIPs", "EFSkipMailGateway", "EFUsers", "ScanAndDropRecipients",
        # Set-OutboundConnector
        "RecipientDomains", "SmartHosts", "ValidationRecipients",
    )
)
"""Connector properties that hold lists (case-folded names): the one definition."""


def split_list(value: Any) -> list[str]:
    """A list value as Exchange and advanced hunting write it: a list, or one string split on ","
    only (never ";": address spaces such as `smtp:*;1` carry their cost after it)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if v is not None]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def parameter_value(name: str, value: Any) -> Any:
    """An audit-log parameter as Set-*Connector takes it (docs/scenarios.md `audit_log`): Exchange's
    "True"/"False" strings are booleans, multi-valued properties are lists."""
    if isinstance(value, str) and value.strip().casefold() in ("true", "false"):
        return value.strip().casefold() == "true"
    if isinstance(value, list) or name.casefold() in MULTI_VALUED:
        return split_list(value)
    return value


class AuditEntry(Result):
    """One successful unified audit log record the playbook reads (failed ones count for nothing)."""

    at: datetime
    operation: str
    actor: str
    client_ip: str | None = None
    object_id: str | None = None
    """AuditData.ObjectId: the connector, rule, domain or account the cmdlet acted on."""
    parameters: dict[str, Any] = {}
    """The cmdlet's parameters, normalised here once (`parameter_value`) for grading, planning and
    the revert they plan."""
    modified: dict[str, Any] = {}
    """Directory records' ModifiedProperties: name -> NewValue (`Role.DisplayName` of a role grant)."""

    @field_validator("parameters")
    @classmethod
    def _normalise(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        return {name: parameter_value(name, value) for name, value in parameters.items()}


class ConnectorChange(AuditEntry):
    """A New-/Set-/Remove-*Connector audit record."""


class CompromisedSenders(Result):
    """Internal accounts sending unusual external volume (tenant-wide): object ids and addresses."""

    object_ids: list[str]
    addresses: list[str]


class MailStats(Result):
    """Summary of the alerted connector's mail in the lookback (rows summarised in the activity)."""

    messages: int = 0
    p1_p2_mismatch: int = 0
    empty_sender_object_id: int = 0
    unprovisioned_sender_domain: int = 0
    junk_or_quarantined: int = 0
    hourly_counts: dict[str, int] = {}
    """Messages per clock hour (ISO hour start -> count) over the baseline window; missing = 0."""
    external_recipient_domains: int = 0
    """Distinct recipient domains that are neither accepted nor partner domains."""
    spoofed_to_partners: int = 0
    spoofed_to_internal: int = 0
    malicious_url_messages: int = 0
    malicious_attachment_messages: int = 0
    sender_ips: list[str] = []
    spoofed_header_senders: list[str] = []
    """Header From (P2) addresses of the connector's spoofed mail."""
    sample_message_ids: list[str] = []
    malicious_sample_message_ids: list[str] = []
    first_contact_senders: int = 0
    """Header senders of the last day's connector mail with no established contact (seed 003)."""
    first_contact_recipient_domains: int = 0
    """Recipient domains of the last day's connector mail that the tenant never mailed before."""
    trace_filtered_as_spam: int | None = None
    """Message trace (Get-MessageTraceV2) messages from the connector's sender IPs in the lookback
    with Status FilteredAsSpam (seeds 001/002); None when the trace could not be read."""
    compromised: CompromisedSenders | None = None
    """The tenant's compromised senders in the lookback, answered by the same hunting query
    (None in results written before it did)."""
    accepted_domains: list[str] | None = None
    """The tenant's accepted domains the activity read itself to classify the mail's domains
    (None when the input carried them)."""
    connector_name: str | None = None
    """The connector whose mail this is (None: no mail was read, or a result written before it said)."""


class FailureBurst(Result):
    """A 60-second bin of failed logons for one account, application, ISP and country, and the
    first success for the same account, ISP and application after the bin's latest failure."""

    failures: int
    earliest_failure: datetime
    latest_failure: datetime
    first_success: datetime | None = None
    application: str = ""
    isp: str = ""
    country: str = ""


class AdminSignIns(Result):
    """The acting admin's sign-in evidence."""

    upn: str
    object_id: str | None = None
    successful_signins: int = 0
    countries: dict[str, int] = {}
    failure_bursts: list[FailureBurst] = []
    """Bursts the playbook's brute-force query found (grading applies the thresholds again)."""


class ResolveConnectorInput(SharedReadInput):
    tenant_id: str
    ip_addresses: list[str] = []
    """The alert's ipEvidence addresses."""
    message_ids: list[str] = []
    """The alert's analyzedMessageEvidence networkMessageIds."""
    connector_name: str | None = None
    """The connector the alert names (generic alerts), tried first."""
    connector_domain: str | None = None
    """The alert's connector domain, tried after the IP configuration."""
    since: datetime
    until: datetime


class ConnectorChangesInput(Frozen):
    tenant_id: str
    connector_name: str
    connector_guid: str
    direction: Direction
    since: datetime
    """Audit records from here on (wider than the lookback: revert needs the record before)."""
    until: datetime


class ConnectorChanges(Result):
    changes: list[ConnectorChange]
    source: str
    """graph_audit_log, search_unified_audit_log or cloud_app_events (30 days only)."""


class SignInThresholds(Frozen):
    """The brute-force thresholds the admins' sign-in evidence is read with."""

    failure_threshold: int
    success_within: timedelta


class AuditLogInput(Frozen):
    tenant_id: str
    since: datetime
    """Connector records from here on (wider than the lookback: a revert needs the record before)."""
    lookback_start: datetime
    """The other admin operations from here on (findings only look this far back)."""
    until: datetime
    sign_ins: SignInThresholds | None = None
    """When set and only CloudAppEvents answers, its hunting query also reads the sign-ins of the
    lookback's connector actors (`AuditLog.sign_ins`), so the case makes no second hunting call."""


class AuditLog(Result):
    """Every audit record one case reads, from one query: the first audit source that answered."""

    connector_changes: list[ConnectorChange] = []
    """Every connector's New-/Set-/Remove- records since `AuditLogInput.since`, oldest first."""
    admin_records: list[AuditEntry] = []
    """Transport-rule, forwarding, inbox-rule, mailbox-permission, role-grant and accepted-domain
    records in the lookback, oldest first."""
    source: str
    """graph_audit_log, search_unified_audit_log or cloud_app_events (30 days only)."""
    failed_sources: list[str] = []
    """The sources tried before `source` that failed, with why."""
    sign_ins: list[AdminSignIns] | None = None
    """The sign-in evidence of every actor of a connector record in the lookback, when the input
    asked for it and CloudAppEvents answered (None: not read here)."""


class DirectoryAccount(Result):
    upn: str
    object_id: str | None = None
    """None: the actor is no directory user (a service, an application): never suspect (rule 10)."""


class DirectoryAccountsInput(SharedReadInput):
    tenant_id: str
    upns: list[str]


class DirectoryAccounts(Result):
    accounts: list[DirectoryAccount]


class Sweep(Frozen):
    """What the whole playbook reads beyond the alerted connector (docs/scenarios.md, version 2)."""

    connectors: list[ConnectorConfig] = []
    """Every inbound and outbound connector when the case started."""
    records: list[ConnectorChange] = []
    """Every connector's audit records (any age), oldest first."""
    admin_records: list[AuditEntry] = []
    """The other admin operations in the lookback, oldest first."""
    accounts: list[DirectoryAccount] = []
    """The records' actors as the directory knows them; empty when the lookup failed."""


class MailStatsInput(SharedReadInput):
    tenant_id: str
    connector_name: str
    now: datetime
    lookback: timedelta
    accepted_domains: list[str] | None = None
    """None: the activity reads them (the tenant cache shares one read among the worker's cases)
    and returns them in `MailStats.accepted_domains`."""
    partner_domains: list[str]
    compromised_per_hour: int = Thresholds().compromised_sender_per_hour
    """An internal account sending more external messages than this in an hour is a compromised
    sender (the same query reads them; inputs written before carry none)."""
    resolve: ResolveConnectorInput | None = None
    """Set when the case has not resolved its connector yet (patch `mail-beside-resolution`): the
    mail is that of the connector the alert names by configuration (the resolution's first steps,
    on the tenant's shared connector list), and when the configuration names none nothing is read
    (`MailStats.connector_name` None). `connector_name` is then empty."""


class RestrictedEntitiesInput(SharedReadInput):
    tenant_id: str
    connector_name: str
    connector_guid: str


class RestrictedEntities(Result):
    blocked_connector: bool
    blocked_senders: list[str]


class TenantInput(SharedReadInput):
    tenant_id: str


class AcceptedDomains(Result):
    domains: list[str]


class AdminSignInsInput(SharedReadInput):
    tenant_id: str
    upns: list[str]
    since: datetime
    until: datetime
    failure_threshold: int
    success_within: timedelta
    accounts: list[DirectoryAccount] = []
    """The directory's answer for these accounts when the case already read it: no second lookup."""


class AdminEvidence(Result):
    admins: list[AdminSignIns]


class CompromisedSendersInput(Frozen):
    """Cases begun before `fewer-tenant-calls` read compromised senders in their own activity."""

    tenant_id: str
    since: datetime
    until: datetime
    per_hour: int


class Evidence(Frozen):
    """Everything grading and planning need, collected by activities."""

    connector: ConnectorConfig
    changes: list[ConnectorChange] = []
    """Audit records for the connector (any age; grading applies the lookback)."""
    mail: MailStats = MailStats()
    accepted_domains: list[str] = []
    blocked_connector: bool = False
    blocked_senders: list[str] = []
    admins: list[AdminSignIns] = []
    compromised_senders: list[str] = []
    """Internal SenderObjectIds with unusual outbound volume (tenant-wide)."""
    compromised_sender_addresses: list[str] = []
    """Their header From addresses, for the report."""
    changes_source: str = ""
    """Which audit source answered: graph_audit_log, search_unified_audit_log or cloud_app_events."""
    failed_audit_sources: list[str] = []
    """Audit sources that failed before `changes_source` answered."""
    sweep: Sweep | None = None
    """The other connectors and the admins' footprint (None in cases begun before version 2)."""
    unavailable: list[str] = []
    """Sources that could not be read after retries."""
    collected_at: datetime


# --------------------------------------------------------------------------- findings and verdict


SubjectKind = Literal[
    "connector", "account", "mailbox", "grantee", "access_right", "transport_rule", "inbox_rule", "role", "domain"
]


class Subject(Frozen):
    """One thing a finding is about: a connector (Guid, name), an account that acted (object id,
    UPN; only directory users), a mailbox (UPN), an account something was granted to (`grantee`)
    and what (`access_right`, `role`), a transport rule or an inbox rule (name), an accepted
    domain. Either part may be missing when the evidence did not have it."""

    kind: SubjectKind
    id: str | None = None
    name: str | None = None


class Finding(Frozen):
    id: FindingId
    summary: str
    evidence: dict[str, Any] = {}
    """What the report shows the analyst; no decision reads it."""
    subjects: list[Subject] = []
    """What the finding is about; planning reads these, never the summary or the evidence."""

    def accounts(self) -> list[Subject]:
        return self.of("account")

    def of(self, kind: SubjectKind) -> list[Subject]:
        return [s for s in self.subjects if s.kind == kind]


class ReviewedChange(Frozen):
    """A creation or modification of the connector in the lookback, as grading judged it."""

    change: ConnectorChange
    ticket: str | None = None
    """The approved change record that covers it, if one does."""
    unexpected_actor: bool = False
    """Neither approved nor made by one of the organization's connector admins."""


class ChangeHistory(Frozen):
    """The connector's audit history as grading read it; planning acts on the same reading."""

    changes: list[ReviewedChange] = []
    """Creations and modifications in the lookback, oldest first."""
    acting_admins: list[str] = []
    """Their actors (case-folded UPNs), in first-seen order."""


class OtherConnector(Frozen):
    """A connector other than the alerted one that the sweep found suspicious, as grading read it."""

    connector: ConnectorConfig
    changes: list[ReviewedChange]
    """Its creations and modifications in the lookback, oldest first."""
    records: list[ConnectorChange]
    """Every audit record of it (any age): where a revert finds the values to restore."""


class Suspect(Frozen):
    """An admin account the case treats as compromised ("Who is suspect"): reset and revoke it."""

    upn: str
    """Case-folded userPrincipalName."""
    object_id: str | None = None
    because: list[FindingId]
    """The findings that make it suspect."""


class Verdict(Frozen):
    kind: VerdictKind
    findings: list[Finding]
    reasons: list[str]
    """Which findings drove the verdict and which were explained away, in plain words."""
    history: ChangeHistory = ChangeHistory()
    suspects: list[Suspect] = []
    """Every suspect admin, the alerted connector's acting admins first."""
    others: list[OtherConnector] = []
    """The connectors behind `other_connector_suspicious`, for planning to contain."""

    def has(self, finding_id: str) -> bool:
        return any(f.id == finding_id for f in self.findings)


# --------------------------------------------------------------------------- action parameters
# One frozen model per kind of action: what the planner decides and the action activity does.
# `kind` picks the model (a discriminated union); it is not serialised, because on the wire the
# action's own `kind` says it once and PlannedAction hands it down when it is decoded.


class ConnectorTarget(Frozen):
    """A connector by its immutable Guid."""

    identity: str
    """The connector's Guid (a name can be changed by the attacker; the Guid cannot)."""
    direction: Direction


class ConnectorParams(ConnectorTarget):
    """disable_connector, remove_connector."""

    kind: Literal["disable_connector", "remove_connector"] = Field(exclude=True)


class RevertParams(ConnectorTarget):
    """revert_connector_change: Set-*Connector with each property's last authorised value."""

    kind: Literal["revert_connector_change"] = Field("revert_connector_change", exclude=True)
    restore: dict[str, Any]
    """Property -> value to set, as the audit log's normalised parameters hold it."""


class UnblockConnectorParams(Frozen):
    kind: Literal["unblock_connector"] = Field("unblock_connector", exclude=True)
    connector_id: str
    """The Guid Get-BlockedConnector reports as ConnectorId."""


class UnblockSenderParams(Frozen):
    kind: Literal["unblock_sender"] = Field("unblock_sender", exclude=True)
    sender_address: str


class UserParams(Frozen):
    """reset_admin_password, revoke_sessions."""

    kind: Literal["reset_admin_password", "revoke_sessions"] = Field(exclude=True)
    user: str
    """Object id when evidence had it, else the userPrincipalName (Graph accepts both)."""


class MfaParams(Frozen):
    kind: Literal["require_admin_mfa"] = Field("require_admin_mfa", exclude=True)
    report_only: bool = True
    """Create the policy as `enabledForReportingButNotEnforced` so it cannot lock admins out."""


class TransportRuleParams(Frozen):
    kind: Literal["disable_transport_rule"] = Field("disable_transport_rule", exclude=True)
    name: str
    """The rule's Name when the case started (Get-TransportRule)."""


class MailForwardingParams(Frozen):
    kind: Literal["remove_mail_forwarding"] = Field("remove_mail_forwarding", exclude=True)
    mailbox: str
    """The mailbox's userPrincipalName."""
    inbox_rules: list[str] = []
    """Names of its inbox rules that the suspect admins' records created or changed to forward."""


class MailboxGrant(Frozen):
    user: str
    """The grantee, as the record's `User` parameter names it."""
    access_rights: list[str]


class MailboxPermissionParams(Frozen):
    kind: Literal["remove_mailbox_permission"] = Field("remove_mailbox_permission", exclude=True)
    mailbox: str
    grants: list[MailboxGrant]
    """What the suspect admins' records granted on the mailbox."""


class RoleAssignmentParams(Frozen):
    kind: Literal["remove_role_assignment"] = Field("remove_role_assignment", exclude=True)
    user: str
    """The grantee's userPrincipalName."""
    roles: list[str]
    """Display names of the directory roles the suspect admins' records granted it."""


AlertStatusValue = Literal["new", "inProgress", "resolved"]
Classification = Literal["truePositive", "falsePositive", "informationalExpectedActivity"]
Determination = Literal[
    "compromisedAccount",
    "malware",
    "phishing",
    "other",
    "confirmedActivity",
    "lineOfBusinessApplication",
    "notMalicious",
]


class ClassifyParams(Frozen):
    kind: Literal["classify_alert"] = Field("classify_alert", exclude=True)
    alert_id: str
    status: AlertStatusValue
    classification: Classification | None = None
    """None leaves the alert's classification as it is (needs_review: still `unknown`)."""
    determination: Determination | None = None


class CommentParams(Frozen):
    kind: Literal["comment_alert"] = Field("comment_alert", exclude=True)
    alert_id: str
    comment: str


ActionParams = Annotated[
    ConnectorParams
    | RevertParams
    | UnblockConnectorParams
    | UnblockSenderParams
    | UserParams
    | MfaParams
    | ClassifyParams
    | CommentParams
    | TransportRuleParams
    | MailForwardingParams
    | MailboxPermissionParams
    | RoleAssignmentParams,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- plan and approvals


class PlannedAction(Frozen):
    id: str
    """Short id unique within the case, e.g. `a3`."""
    kind: ActionKind
    target: str = ""
    stage: Stage
    reason: str
    policy: PolicyKind
    requires: list[str] = []
    """Ids of actions that must be executed and verified before this one may run."""
    params: ActionParams
    """The parameters of exactly this kind of action (a mismatch fails validation)."""

    @model_validator(mode="before")
    @classmethod
    def _hand_kind_to_params(cls, data: Any) -> Any:
        """Serialised params carry no `kind`: the action's kind selects their model."""
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            return {**data, "params": {"kind": data.get("kind"), **data["params"]}}
        return data

    @model_validator(mode="after")
    def _params_fit_kind(self) -> PlannedAction:
        if self.params.kind != self.kind:
            raise ValueError(f"{self.kind} cannot take the parameters of {self.params.kind}")
        return self


class Plan(Frozen):
    actions: list[PlannedAction]

    @property
    def hash(self) -> str:
        """What an approval names. Params without nulls, as they were hashed while they were dicts,
        so the same plan keeps its hash."""
        body = json.dumps([a.model_dump(mode="json", exclude_none=True) for a in self.actions], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


class Decision(Frozen):
    """An analyst's answer to one pending action (the approval update / signal payload).

    Signed (`workflows/signatures.py`): an Ed25519 signature by `key_id` over every other field,
    so it holds for this case, action, plan and answer only, once (`nonce`), and shortly after
    `issued_at`. The unsigned form (no signature) counts only where `allow_unsigned` is set."""

    action_id: str
    approver: str
    plan_hash: str
    approve: bool = True
    reason: str = ""
    case_id: str = ""
    issued_at: AwareDatetime | None = None
    nonce: str = ""
    key_id: str = ""
    signature: str = ""
    """Base64 Ed25519 signature over `signatures.signed_bytes(decision)`."""

    @property
    def signed(self) -> bool:
        return bool(self.signature)


class DecisionReceipt(Frozen):
    action_id: str
    approver: str
    plan_hash: str
    status: ActionStatus
    approvals: list[str]
    still_needed: int


class ActionRecord(BaseModel):
    """What happened to one planned action (mutable: the workflow fills it in)."""

    action: PlannedAction
    status: ActionStatus = "planned"
    approved_by: list[str] = []
    rejected_by: str | None = None
    decision_reason: str = ""
    decided_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verified: bool | None = None
    detail: str = ""
    decisions: list[Decision] = []
    """The decisions that count, as received (signature, key id, nonce, issued-at): the report
    keeps them so `quell report --verify` can check every one offline."""


class ActionOutcome(Result):
    """What an action activity reports: the state it found, whether it acted, and verification.
    `skipped`: the activity refused to write (e.g. an alert Graph does not know), detail says why."""

    status: Literal["done", "already_done", "dry_run", "skipped"]
    verified: bool
    detail: str


class ActionInput(Frozen):
    """Input of every `action.*` activity.

    The activity trusts none of it for authorisation: it re-checks, against the worker's current
    settings, that the action's kind is `auto` or that `decisions` hold enough valid signatures
    for this case, this action and `plan` (whose hash the signatures name)."""

    tenant_id: str
    case_id: str
    action: PlannedAction
    mode: Mode = "enforce"
    plan: Plan | None = None
    decisions: list[Decision] = []
    case_accounts: list[str] = []
    """Accounts the case's findings name: none of them may approve (separation of duties)."""


class AlertWriteBacks(Frozen):
    """Input of `action.alert-write-backs`: one alert write-back action (classify or comment, as
    planned for the case's own alert, with its approvals) for a batch of the case's alerts."""

    action: ActionInput
    alert_ids: list[str]


AlertOutcomeStatus = Literal["done", "already_done", "dry_run", "skipped", "failed"]


class AlertOutcome(Result):
    """What a write-back did to one alert; `failed`: it could not, after the activity's retries."""

    alert_id: str
    status: AlertOutcomeStatus
    verified: bool
    detail: str


class AlertWriteBackResult(Result):
    outcomes: list[AlertOutcome]
    """One per alert of the batch, in the batch's order."""


class NotifiedAction(Frozen):
    """One action of a notification, as an approver sees it on the card."""

    id: str
    kind: ActionKind
    target: str = ""
    reason: str = ""
    policy: PolicyKind = "approve"


class Notification(Frozen):
    """Input of `notify.send`: an approval request, reminder, escalation or expiry.

    The fields after `action_ids` make the chat card; histories written before them decode with
    the defaults (a plain card of `text`)."""

    case_id: str
    kind: Literal["approval_requested", "reminder", "escalation", "expired"]
    text: str
    action_ids: list[str] = []
    tenant_id: str = ""
    actions: list[NotifiedAction] = []
    plan_hash: str | None = None
    verdict: VerdictKind | None = None
    findings: list[str] = []
    """Finding summaries, as the report shows them."""
    expires_at: datetime | None = None


class PendingApproval(Frozen):
    case_id: str
    action_id: str
    kind: ActionKind
    target: str
    reason: str
    policy: PolicyKind
    plan_hash: str
    approvals: list[str]
    still_needed: int
    expires_at: datetime | None


# --------------------------------------------------------------------------- status and report


class CaseSummary(Frozen):
    """What the `status` query returns: enough for `quell cases` and the intake API."""

    case_id: str
    tenant_id: str
    stage: CaseStage
    status: CaseStatus
    connector: str | None
    verdict: VerdictKind | None
    alerts: list[str]
    pending: list[PendingApproval]


class CaseReport(BaseModel):
    case_id: str
    tenant_id: str
    alerts: list[str]
    case_status: CaseStatus
    mode: Mode
    connector: str | None
    connector_config: ConnectorConfig | None = None
    verdict: VerdictKind
    findings: list[Finding]
    reasons: list[str]
    plan_hash: str | None = None
    actions: list[ActionRecord] = []
    notes: dict[str, Any] = {}
    """What the playbook says to keep: message ids sample and counts, source IPs, change history."""
    started_at: datetime
    finished_at: datetime | None = None


# --------------------------------------------------------------------------- a case's next run


@dataclass(frozen=True)
class DecisionEntry:
    """One decision as the case accepted it, for the trail in the current details."""

    at: datetime
    decision: Decision
    key_id: str | None = None
    """The id of the approver's signing key, for approvals that are signed."""


class IgnoredSignals(BaseModel):
    """Signals the case refused: how many, and the reasons of the last `KEEP` (bounded state)."""

    KEEP: ClassVar[int] = 20

    count: int = 0
    last: list[str] = []

    def add(self, reason: str) -> None:
        self.count += 1
        self.last = [*self.last, reason][-self.KEEP:]


class WriteBackTally(BaseModel):
    """Where one alert write-back action stands over the case's alerts (workflows/write_backs.py)."""

    through: int = 0
    """How many of the case's alerts, in the order it absorbed them, the action has handled."""
    counts: dict[AlertOutcomeStatus, int] = {}
    unverified: int = 0
    own: AlertOutcome | None = None
    """The outcome for the case's own alert (its first)."""
    notable: list[str] = []
    """What happened to the first alerts that were not written or found as wanted (bounded)."""


class CarriedCase(BaseModel):
    """What a case hands to its next run when it continues as new (docs/storms.md, "Bounded
    history"): everything it decided and was told, so nothing is asked or done twice. The trust is
    the last one read from the worker's settings; every action activity checks the worker's own."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run: int
    """The number of the run this starts (the first continuation is 2)."""
    started: datetime
    stage: CaseStage
    alerts: list[str]
    alert_signals: int
    ignored: IgnoredSignals
    connector: ConnectorConfig | None
    verdict: Verdict
    plan: Plan
    records: list[ActionRecord]
    notes: dict[str, Any]
    deadline: datetime | None
    trust: Trust | None
    nonces: list[str]
    case_accounts: list[str]
    withdrawn: list[str]
    trail: list[DecisionEntry]
    reminders: int
    reminder_due: datetime | None
    write_backs: dict[str, WriteBackTally]


# --------------------------------------------------------------------------- alert poller


class PollCursor(Frozen):
    """Where the next pass starts: alerts created from `since` − overlap on (from `since` when the
    last pass stopped at its page limit), minus those already fed."""

    since: datetime
    """The newest `createdDateTime` fed so far (or the initial lookback's start)."""
    seen: dict[str, datetime] = {}
    """Alert ids fed inside the overlap window before `since`, with their createdDateTime."""
    more: bool = False
    """The last pass stopped at `max_pages` with alerts left: the next continues from `since`
    itself, so a backlog bigger than one pass inside the overlap window cannot stall the poller."""


class PollerInput(Frozen):
    tenant_id: str
    initial_lookback: timedelta = timedelta(hours=1)
    overlap: timedelta = timedelta(minutes=5)
    max_pages: int = 20
    page_size: int = 100
    cursor: PollCursor | None = None
    """For runs started by hand; a scheduled run continues from the last completed run's cursor."""


class ListNewAlerts(Frozen):
    tenant_id: str
    cursor: PollCursor
    overlap: timedelta
    max_pages: int = 20
    page_size: int = 100


class SkippedAlert(Frozen):
    alert_id: str
    reason: str


class AlertBatch(Frozen):
    alerts: list[AlertRef]
    """Connector alerts to feed, oldest first."""
    skipped: list[SkippedAlert] = []
    """Listed alerts that are not connector alerts quell can act on, and why."""
    cursor: PollCursor
    """The cursor once every alert of this batch has been fed."""


class OpenedCase(Frozen):
    """What intake did with one alert (the webhook answers the same)."""

    case_id: str
    alert_id: str
    tenant_id: str
    run_id: str | None = None
    duplicate: bool = False
    """A closed case already absorbed this alert: acknowledged, no new case."""
    related_cases: list[str] = []


class PollerResult(Frozen):
    cursor: PollCursor
    cases: list[OpenedCase] = []
    skipped: list[SkippedAlert] = []


# --------------------------------------------------------------------------- quota pacing


ApiFamily = Literal["hunting", "security", "graph", "exchange", "message_trace"]
"""`hunting`: POST /security/runHuntingQuery; `security`: Graph's alerts and incidents
(/security/alerts_v2, /security/incidents); `graph`: every other Graph call; `message_trace`:
Get-MessageTraceV2 and Get-MessageTraceDetailV2; `exchange`: every other InvokeCommand."""


class FamilyQuota(Frozen):
    """How fast quell calls one API family of one tenant: a token bucket that refills `per_minute`
    tokens a minute and holds at most `burst`. In any window of W minutes it lets through at most
    `burst` + `per_minute` × W calls (`burst` − 1 + `per_minute` × W when every call is single)."""

    per_minute: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class PaceRequest(Frozen):
    """Input of the quota pacer's `acquire` update: a turn for one call of `family`. `holder` names
    the activity (`{run id}/{activity id}/{family}`); `max_wait` is how long its attempt can wait;
    `count`: how many requests the call carries (a Graph JSON batch's, which Microsoft counts one
    by one and which reach it at once), so they take their tokens together."""

    family: ApiFamily
    quota: FamilyQuota
    holder: str
    max_wait: timedelta
    count: int = Field(default=1, ge=1)


class PaceGrant(Frozen):
    """`turn`: when the call may go, by the pacer's clock (Temporal's); `wait`: how long that was
    from the pacer's now. The caller sleeps until the turn by its own clock, so that the time the
    answer took to reach it does not bunch calls up, but never longer than `wait` (a clock that is
    not wall-clock time, as on the time-skipping test server, cannot hold a call up). `reserved`:
    later than the attempt can wait; the turn is kept for the holder, whose next attempt takes it."""

    turn: datetime
    wait: timedelta
    reserved: bool = False


class ThrottleReport(Frozen):
    """Input of the quota pacer's `throttled` update: the tenant answered a call of `family` 429 or
    503 with Retry-After; no turn of that family starts before it has passed."""

    family: ApiFamily
    quota: FamilyQuota
    retry_after: timedelta


class PacerState(Frozen):
    """The quota pacer's state, carried across continue-as-new: per family the bucket's next turn
    when full (its theoretical arrival time), and the turns reserved for holders that come back."""

    next_turn: dict[ApiFamily, datetime] = {}
    reserved: dict[str, list[datetime]] = {}


# `CaseInput.carried` names `CarriedCase`, defined further down: build CaseInput's schema now that
# it is, once. Left incomplete, every decode of a case's input (the first workflow task of every
# case) built CaseInput's schema again, as the payload converter's TypeAdapter does not complete it.
CaseInput.model_rebuild()
