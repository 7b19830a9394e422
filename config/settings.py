"""quell settings: environment (`QUELL_…`, `__` for nesting) ahead of a TOML file.

The TOML file is `quell.toml` in the working directory, or the path in `QUELL_CONFIG`.
`config/quell.example.toml` documents every setting. Secrets are `SecretStr`: they print as
`**********` and never reach logs, workflow history or errors; `load_settings` reports a
configuration error without the values it refused.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workflows import signatures
from workflows.types import (
    ApiFamily,
    ApprovalPolicy,
    ApproverKey,
    FamilyQuota,
    HistoryLimits,
    Mode,
    Organization,
    PolicyKind,
    Thresholds,
    Trust,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXO_SCOPE = "https://outlook.office365.com/.default"


CODEC_KEY_BYTES = 32
CODEC_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _blank_is_none(value: object) -> object:
    return None if value in ("", None) else value


class SettingsError(ValueError):
    """The configuration is invalid; the message names each setting and why, never its value."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_url(url: str) -> str:
    """An https:// URL with a host; plain http only to a loopback host (the emulator)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("must be an absolute URL with a host and no credentials")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return url
    raise ValueError("must be an https:// URL (plain http only to a loopback host)")


class Section(BaseModel):
    """A settings section: misspelt keys are errors, and errors never quote the values given."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class TemporalSettings(Section):
    """Where the Temporal frontend is and how to prove who we are to it (names as the Temporal CLI's)."""


    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "quell-cases"
    tls: bool | None = None
    """None: TLS when any option below is set (as the Temporal CLI does). False with one set is an error."""
    server_ca_cert_path: Path | None = None
    """PEM of the CA that issued the server's certificate; default: the system's roots."""
    server_name: str | None = None
    """TLS server name (SNI, HTTP/2 authority and the name verified) when it differs from the address host."""
    client_cert_path: Path | None = None
    """mTLS: PEM client certificate chain (with client_key_path)."""
    client_key_path: Path | None = None
    """mTLS: PEM private key of client_cert_path."""
    api_key: SecretStr | None = None
    """Temporal Cloud API key, sent as a bearer token; implies TLS."""

    _blank_api_key = field_validator("api_key", mode="before")(_blank_is_none)

    @model_validator(mode="after")
    def _consistent(self) -> TemporalSettings:
        if self.client_key_path is not None and self.client_cert_path is None:
            raise ValueError("temporal.client_key_path is set without temporal.client_cert_path")
        if self.client_cert_path is not None and self.client_key_path is None:
            raise ValueError("temporal.client_cert_path is set without temporal.client_key_path")
        if self.tls is False and self.tls_options():
            raise ValueError(f"temporal.tls is false but TLS is needed by {', '.join(self.tls_options())}")
        return self

    def tls_options(self) -> list[str]:
        """Names of the options set that only work over TLS (an API key is never sent in clear)."""
        values = {
            "server_ca_cert_path": self.server_ca_cert_path,
            "server_name": self.server_name,
            "client_cert_path": self.client_cert_path,
            "api_key": self.api_key,
        }
        return [f"temporal.{name}" for name, value in values.items() if value is not None]

    @property
    def uses_tls(self) -> bool:
        return self.tls if self.tls is not None else bool(self.tls_options())


class CodecSettings(Section):
    """Payload encryption: AES-256-GCM over everything quell stores in Temporal (inputs, results,
    signals, queries, errors). Keys by id: encode with `current`, decode with any, so keys rotate
    by adding one, making it current, and dropping the old one once no history needs it."""


    current: str | None = None
    keys: dict[str, SecretStr] = {}
    """Key id -> base64 of 32 random bytes (`openssl rand -base64 32`). The id is stored beside
    each payload in the clear; the key never leaves the worker, intake and CLI."""

    @model_validator(mode="after")
    def _usable(self) -> CodecSettings:
        for key_id, key in self.keys.items():
            if not CODEC_KEY_ID.fullmatch(key_id):
                raise ValueError("codec key ids are 1-64 letters, digits, '.', '_' or '-'")
            if len(_b64(key)) != CODEC_KEY_BYTES:
                raise ValueError(f"codec key {key_id} is not the base64 of {CODEC_KEY_BYTES} bytes")
        if self.keys and self.current is None:
            raise ValueError("codec.current must name the key of codec.keys to encrypt with")
        if self.current is not None and self.current not in self.keys:
            raise ValueError(f"codec.current = {self.current!r} names no key of codec.keys")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def key_bytes(self) -> dict[str, bytes]:
        return {key_id: _b64(key) for key_id, key in self.keys.items()}


def _b64(key: SecretStr) -> bytes:
    try:
        return base64.b64decode(key.get_secret_value().strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


class TenantSettings(Section):
    """One Microsoft 365 tenant quell responds for, with its app registration."""


    tenant_id: str = Field(min_length=1)
    client_id: str
    client_secret: SecretStr | None = None
    certificate_path: Path | None = None
    """PEM with the private key and certificate, for CertificateCredential (preferred in production)."""
    authority_host: str = "https://login.microsoftonline.com"
    disable_instance_discovery: bool = False
    """True only for a private authority such as the emulator; production keeps discovery on."""
    graph_base_url: str = "https://graph.microsoft.com"
    exo_base_url: str = "https://outlook.office365.com"
    organization: Organization = Organization()

    @field_validator("authority_host", "graph_base_url", "exo_base_url")
    @classmethod
    def _https(cls, url: str) -> str:
        return secure_url(url)

    @field_validator("client_secret")
    @classmethod
    def _not_blank(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and not secret.get_secret_value().strip():
            raise ValueError("must not be empty")
        return secret

    @model_validator(mode="after")
    def _one_credential(self) -> TenantSettings:
        if (self.client_secret is None) == (self.certificate_path is None):
            raise ValueError(
                f"tenant {self.tenant_id}: set exactly one of client_secret or certificate_path"
            )
        return self

    @property
    def graph_host(self) -> str:
        return urlsplit(self.graph_base_url).hostname or ""


class SourceGrant(Section):
    """What an alert source (an `api_tokens` or `hmac_secrets` name) may do: post alerts for these tenants."""


    tenants: list[str] = Field(min_length=1)


class AnalystGrant(Section):
    """What a static-token analyst (an `api_tokens` name) may do: read these tenants' cases and
    reports, and approve their actions if `approve` (the case's `approval.approvers` still applies)."""


    tenants: list[str] = Field(min_length=1)
    approve: bool = False


class OidcSettings(Section):
    """Analysts signing in with OpenID Connect (Microsoft Entra ID): the intake accepts their
    access tokens. The approver is the token's `upn` (else `preferred_username`); it may read the
    cases of the tenant in its `tid` claim and, with the approver role or group, approve them."""


    issuer: str
    """e.g. https://login.microsoftonline.com/<tenant id>/v2.0 (the token's `iss`)."""
    audience: str = Field(min_length=1)
    """The intake's application ID URI or client id (the token's `aud`)."""
    jwks_url: str | None = None
    """Signing keys; default: `jwks_uri` of the issuer's `/.well-known/openid-configuration`."""
    analyst_role: str | None = None
    """App role (`roles` claim) that may read cases and reports."""
    analyst_group: str | None = None
    """Group object id (`groups` claim) that may read cases and reports."""
    approver_role: str | None = None
    """App role that may approve (and read)."""
    approver_group: str | None = None
    """Group object id that may approve (and read)."""

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _https(cls, url: str | None) -> str | None:
        return None if url is None else secure_url(url)

    @model_validator(mode="after")
    def _grants_something(self) -> OidcSettings:
        if not (self.analyst_role or self.analyst_group or self.approver_role or self.approver_group):
            raise ValueError("set at least one of analyst_role, analyst_group, approver_role, approver_group")
        return self


class IntakeSettings(Section):

    host: str = "127.0.0.1"
    port: int = 8088
    api_tokens: dict[str, SecretStr] = {}
    """Bearer tokens for the intake API, by the caller's name (the name is what the audit shows).
    Every name needs a grant: `sources` (post alerts) and/or `analysts` (read, approve)."""
    hmac_secrets: dict[str, SecretStr] = {}
    """Shared secrets of alert sources that sign their webhooks (HMAC-SHA256), by source name;
    every name needs a `sources` grant."""
    sources: dict[str, SourceGrant] = {}
    """Alert sources by credential name (an `api_tokens` or `hmac_secrets` name) and their tenants."""
    analysts: dict[str, AnalystGrant] = {}
    """Static-token analysts by `api_tokens` name: the tenants they read, whether they approve."""
    oidc: OidcSettings | None = None
    """Analysts' Entra ID access tokens (besides static tokens)."""
    docs: bool = False
    """Serve /docs and /openapi.json (development only: they describe the API to anybody)."""
    ssl_certfile: Path | None = None
    """PEM certificate (chain) for `quell intake` to serve HTTPS itself; with `ssl_keyfile`."""
    ssl_keyfile: Path | None = None
    max_body_bytes: int = 1_000_000
    codec_cors_origins: list[str] = []
    """Browser origins (the Temporal UI's, e.g. "http://localhost:8233") allowed to call `/codec`."""
    signing_key: SecretStr | None = None
    """PEM (PKCS#8, unencrypted) Ed25519 private key the approvals API signs decisions with, in
    the name of the caller it authenticated; its public key is `approval.api_public_key`."""
    related_window: timedelta = timedelta(hours=24)
    """A case for the same tenant and key that closed within this window is named in a new case's
    `related_cases`, and an alert such a case already absorbed is acknowledged without a new case."""

    @field_validator("api_tokens", "hmac_secrets")
    @classmethod
    def _no_blank_secret(cls, secrets: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in secrets.items():
            if not name.strip() or not secret.get_secret_value().strip():
                raise ValueError("names and secrets must not be empty")
        return secrets

    @model_validator(mode="after")
    def _every_credential_granted(self) -> IntakeSettings:
        for name in self.api_tokens.keys() - self.sources.keys() - self.analysts.keys():
            raise ValueError(f"api token {name!r} has no grant: name it under intake.sources or intake.analysts")
        for name in self.hmac_secrets.keys() - self.sources.keys():
            raise ValueError(f"hmac secret {name!r} has no grant: name it under intake.sources")
        for name in self.sources.keys() - self.api_tokens.keys() - self.hmac_secrets.keys():
            raise ValueError(f"source {name!r} has no credential in intake.api_tokens or intake.hmac_secrets")
        for name in self.analysts.keys() - self.api_tokens.keys():
            raise ValueError(f"analyst {name!r} has no token in intake.api_tokens")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set both ssl_certfile and ssl_keyfile, or neither")
        return self

    def granted_tenants(self) -> set[str]:
        return {t for grant in [*self.sources.values(), *self.analysts.values()] for t in grant.tenants}


class PollerSettings(Section):
    """The alerts_v2 poller: one Temporal Schedule per tenant (`quell poller install`)."""

    every: timedelta = timedelta(minutes=1)
    initial_lookback: timedelta = timedelta(hours=1)
    """How far back the first pass of a new schedule looks (there is no cursor yet)."""
    overlap: timedelta = timedelta(minutes=5)
    """Each pass re-reads this much before its cursor (alerts are indexed late) and skips the
    alert ids it already fed, so a late alert is neither missed nor fed twice."""
    max_pages: int = Field(default=20, ge=1)
    """Graph pages one pass reads at most, oldest first; the rest waits for the next pass (which
    continues right after the last alert fed)."""
    page_size: int = Field(default=100, ge=1, le=2000)
    """Alerts a page (`$top`; Graph serves at most 2000)."""


class ResourceTuner(Section):
    """Slots that follow the host's load (Temporal's resource-based tuner) instead of fixed counts."""

    target_cpu_usage: float = Field(default=0.8, gt=0, le=1)
    target_memory_usage: float = Field(default=0.8, gt=0, le=1)


class WorkerSettings(Section):
    """What one `quell worker` process runs at once. The defaults are sized for a storm
    (docs/storms.md): few workflow tasks at a time, because Python runs one at a time (more slots
    only make each task wait longer for the interpreter; measured in 80-case bursts: with 100 slots
    22 tasks ran longer than 5 s of their 10 s timeout, with 4 none); activities wait on HTTP and
    for their quota turns (asleep, they cost a coroutine), so many run at once: with 50 slots, 50
    concurrent cases under Microsoft's quotas left reads waiting up to 15 s for a slot."""

    max_concurrent_workflow_tasks: int = Field(default=4, ge=1)
    max_concurrent_activities: int = Field(default=200, ge=1)
    workflow_task_pollers: int = Field(default=4, ge=2)
    """Concurrent workflow task polls (at least 2: one for the sticky queue of cached cases)."""
    activity_task_pollers: int = Field(default=5, ge=1)
    max_cached_workflows: int = Field(default=1000, ge=0)
    """Cases kept in memory between tasks (a case waiting for approval stays cached; an evicted one
    is replayed from its history on its next task)."""
    resource_tuner: ResourceTuner | None = None
    """Set to size slots by CPU and memory use instead of the two `max_concurrent_*` counts."""
    graceful_shutdown: timedelta = timedelta(seconds=10)
    """How long a stopping worker lets running activities finish."""


class QuotaSettings(Section):
    """How fast the workers call each tenant, per API family (`[quotas]`, docs/storms.md "Pacing"):
    a token bucket per tenant and family that every worker of the task queue shares through the
    tenant's quota pacer workflow. A bucket lets through at most burst + per_minute × W calls in
    any W minutes; the defaults keep under Microsoft's documented limits (advanced hunting
    45 a minute, Graph security 150 a minute, Get-MessageTraceV2 100 in 5 minutes). Microsoft
    documents no rate for the rest of InvokeCommand; `exchange` is quell's own, moderate pace."""

    enabled: bool = True
    """False: every call goes out as soon as it is made, and 429s alone slow the workers down."""
    hunting: FamilyQuota = FamilyQuota(per_minute=40, burst=5)
    """POST /security/runHuntingQuery: 4 + 40 = 44 a minute at most."""
    security: FamilyQuota = FamilyQuota(per_minute=125, burst=20)
    """Graph's alerts and incidents (the alert reads and write-backs): 20 + 125 = 145 a minute at
    most. The burst holds a whole JSON batch (20 requests, which take their tokens at once)."""
    graph: FamilyQuota = FamilyQuota(per_minute=600, burst=50)
    """Every other Graph call (directory, sign-ins, audit, conditional access): Entra ID's limits
    are thousands of requests a minute; quell's own pace is 10 a second after a burst of 50."""
    exchange: FamilyQuota = FamilyQuota(per_minute=120, burst=30)
    """Every other InvokeCommand: no documented limit; 2 a second after a burst of 30."""
    message_trace: FamilyQuota = FamilyQuota(per_minute=14, burst=30)
    """Get-MessageTraceV2 / Get-MessageTraceDetailV2: 29 + 14 × 5 = 99 in 5 minutes at most."""

    def families(self) -> dict[ApiFamily, FamilyQuota]:
        return {"hunting": self.hunting, "security": self.security, "graph": self.graph,
                "exchange": self.exchange, "message_trace": self.message_trace}


class TenantCacheSettings(Section):
    """Tenant-wide facts (accepted domains, connectors, block lists, directory accounts) shared by the
    cases one worker runs whose alerts were raised before the read started (docs/storms.md)."""

    ttl: timedelta = Field(default=timedelta(seconds=60), ge=timedelta(0))
    """How long one read of a tenant's fact serves its cases, at most; 0 shares only a read in flight."""


class ApprovalSettings(Section):
    """Who may approve what, with which keys, and how long a request waits (`[approval]`).

    The worker reads it for every case (the `approvals.trust` activity, and again in every action
    activity), so an edit of the config file counts for running cases at their next refresh.
    """

    approvers: list[ApproverKey | str] = []
    """`{account, public_key}` entries (an account may have several keys); plain account names
    only with `allow_unsigned`."""
    api_public_key: str | None = None
    """The approvals API's public key (`quell keys init --api`): it may sign for any approver."""
    allow_unsigned: bool = False
    """Accept unsigned decisions from the listed accounts. Demo and emulator scenarios only:
    anyone who can reach Temporal can then approve in an approver's name."""
    by_action: dict[str, PolicyKind] = ApprovalPolicy().by_action
    default: PolicyKind = "approve"
    remind_every: timedelta = timedelta(minutes=30)
    escalate_after_reminders: int = 2
    expire_after: timedelta = timedelta(hours=8)
    window: timedelta = timedelta(minutes=15)
    """A decision must arrive within this of being signed."""
    max_skew: timedelta = timedelta(minutes=2)
    """How far in the future a signature's issued-at may be (the signer's clock ahead)."""
    valid_for: timedelta = timedelta(hours=9)
    """How long a signed approval authorises its action in the action activity (longer than
    `expire_after`: an approved action may wait for the actions before it)."""

    @model_validator(mode="after")
    def _keys_unless_unsigned(self) -> ApprovalSettings:
        for entry in self.approvers:
            if isinstance(entry, str) and not self.allow_unsigned:
                raise ValueError(
                    f"approver {entry} has no public key: give {{account, public_key}} "
                    "(quell keys init), or set allow_unsigned (demo only)"
                )
            if isinstance(entry, ApproverKey):
                signatures.load_public_key(entry.public_key)
        if self.api_public_key is not None:
            signatures.load_public_key(self.api_public_key)
        return self

    def accounts(self) -> list[str]:
        names = [e if isinstance(e, str) else e.account for e in self.approvers]
        return list(dict.fromkeys(n.strip().casefold() for n in names))

    def for_action(self, kind: str) -> PolicyKind:
        return self.by_action.get(kind, self.default)

    def policy(self) -> ApprovalPolicy:
        """The policy a case's input carries (the workflow reads only its timing)."""
        return ApprovalPolicy(
            approvers=self.accounts(), by_action=self.by_action, default=self.default,
            remind_every=self.remind_every, escalate_after_reminders=self.escalate_after_reminders,
            expire_after=self.expire_after,
        )

    def trust(self) -> Trust:
        return Trust(
            approvers=self.accounts(),
            keys=[e for e in self.approvers if isinstance(e, ApproverKey)],
            api_key=self.api_public_key,
            by_action=self.by_action,
            default=self.default,
            allow_unsigned=self.allow_unsigned,
            window=self.window,
            max_skew=self.max_skew,
        )


class MetricsSettings(Section):
    """Prometheus metrics, Temporal's and quell's, served by the Temporal SDK's runtime at
    `http://{bind}:{port}/metrics` in the worker and in the intake. Off unless a port is set (the
    worker and the intake on one host need a port each: `--metrics-port` on the command line)."""

    bind: str = "127.0.0.1"
    """Loopback by default: expose it beyond the host deliberately (the scrape has no authentication)."""
    port: int | None = Field(None, ge=1, le=65535)
    pending_every: timedelta = timedelta(seconds=30)
    """How often the worker counts the actions waiting for approval (the pending gauges)."""

    @property
    def enabled(self) -> bool:
        return self.port is not None

    @property
    def address(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{host}:{self.port}"


class TracingSettings(Section):
    """OpenTelemetry spans for every workflow, activity, signal, query and update (the SDK's
    TracingInterceptor), exported by the process's OpenTelemetry tracer provider. Needs
    `pip install 'quell[tracing]'`."""

    enabled: bool = False


APPROVAL_URL_FIELDS = {"case_id", "action_id"}
LEGACY_WEBHOOK_ENV = "QUELL_NOTIFY_WEBHOOK"


class NotifySettings(Section):
    """Approval cards: Microsoft Teams (Adaptive Card 1.5) and Slack (Block Kit) incoming webhooks.
    Requests, reminders and expiries go to `teams_webhook` / `slack_webhook`; escalations go to the
    on-call webhooks (to the regular ones when no on-call one is set). Webhook URLs are secrets."""

    teams_webhook: SecretStr | None = None
    slack_webhook: SecretStr | None = None
    oncall_teams_webhook: SecretStr | None = None
    oncall_slack_webhook: SecretStr | None = None
    approval_url: str | None = None
    """The page an approver opens from a card, e.g. "https://soc.contoso.com/quell/{case_id}/{action_id}":
    it signs the approver in and sends the decision with their own token (`POST /v1/cases/{case}/approvals`).
    The card's button carries the case and action ids only, never a token. Unset: cards name the
    `quell approve` command instead of a button."""

    _blank = field_validator(
        "teams_webhook", "slack_webhook", "oncall_teams_webhook", "oncall_slack_webhook", mode="before"
    )(_blank_is_none)

    @field_validator("teams_webhook", "slack_webhook", "oncall_teams_webhook", "oncall_slack_webhook")
    @classmethod
    def _secure_webhook(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            secure_url(url.get_secret_value())
        return url

    @field_validator("approval_url")
    @classmethod
    def _approval_url(cls, template: str | None) -> str | None:
        if template is None:
            return None
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        if not fields <= APPROVAL_URL_FIELDS:
            raise ValueError("may name {case_id} and {action_id} only")
        secure_url(template.format(case_id="case", action_id="a1"))
        return template

    def targets(self, escalation: bool) -> dict[str, SecretStr]:
        """Webhook URLs by chat ("teams", "slack") for a notification."""
        regular = {"teams": self.teams_webhook, "slack": self.slack_webhook}
        oncall = {"teams": self.oncall_teams_webhook, "slack": self.oncall_slack_webhook}
        chosen = oncall if escalation and any(oncall.values()) else regular
        return {chat: url for chat, url in chosen.items() if url is not None}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUELL_", env_nested_delimiter="__", extra="forbid", hide_input_in_errors=True
    )

    temporal: TemporalSettings = TemporalSettings()
    codec: CodecSettings = CodecSettings()
    tenants: list[TenantSettings] = []
    approval: ApprovalSettings = ApprovalSettings()
    thresholds: Thresholds = Thresholds()
    history: HistoryLimits = HistoryLimits()
    """How big one run of a case may grow before it continues as new (docs/storms.md)."""
    mode: Mode = "enforce"
    mfa_report_only: bool = True
    """require_admin_mfa creates its conditional access policy report-only unless this is false."""
    intake: IntakeSettings = IntakeSettings()
    poller: PollerSettings = PollerSettings()
    worker: WorkerSettings = WorkerSettings()
    quotas: QuotaSettings = QuotaSettings()
    tenant_cache: TenantCacheSettings = TenantCacheSettings()
    notify: NotifySettings = NotifySettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _notify_webhook_moved(cls, data: Any) -> Any:
        """`notify_webhook` (plain text to one chat) became `[notify]` (cards per chat)."""
        # The environment variable is no field any more, so pydantic-settings would ignore it silently.
        legacy = [data.get("notify_webhook") if isinstance(data, dict) else None, os.environ.get(LEGACY_WEBHOOK_ENV)]
        if any(_blank_is_none(value) is not None for value in legacy):
            raise ValueError("notify_webhook was replaced by notify.teams_webhook and notify.slack_webhook "
                             "(approval cards; QUELL_NOTIFY__TEAMS_WEBHOOK, QUELL_NOTIFY__SLACK_WEBHOOK): "
                             "move the URL there")
        if isinstance(data, dict) and "notify_webhook" in data:
            data = {k: v for k, v in data.items() if k != "notify_webhook"}
        return data

    @model_validator(mode="after")
    def _known_tenants(self) -> Settings:
        ids = [t.tenant_id for t in self.tenants]
        if len(set(ids)) != len(ids):
            raise ValueError("a tenant_id is configured twice")
        unknown = self.intake.granted_tenants() - set(ids)
        if unknown:
            raise ValueError(f"intake grants name tenants that are not configured: {', '.join(sorted(unknown))}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("QUELL_CONFIG", "quell.toml"))
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @model_validator(mode="after")
    def _api_key_pair(self) -> Settings:
        if self.intake.signing_key is None:
            return self
        private = signatures.load_private_key(self.intake.signing_key.get_secret_value().encode())
        if signatures.public_key_text(private.public_key()) != self.approval.api_public_key:
            raise ValueError("approval.api_public_key is not the public key of intake.signing_key: "
                             "the worker could not verify what the approvals API signs")
        return self

    def tenant(self, tenant_id: str) -> TenantSettings:
        for tenant in self.tenants:
            if tenant.tenant_id == tenant_id:
                return tenant
        raise KeyError(f"unknown tenant {tenant_id}")


def load_settings() -> Settings:
    """Settings from the environment and the TOML file, or a SettingsError that echoes no input
    (pydantic's own message would print the refused value: a mistyped secret, for instance)."""
    try:
        return Settings()
    except ValidationError as invalid:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in invalid.errors(include_input=False, include_url=False)
        ]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def current_approval() -> ApprovalSettings:
    """The `[approval]` settings as the config file and environment say now (read on every call)."""
    return load_settings().approval
