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
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workflows.types import ApprovalPolicy, Mode, Organization, Thresholds

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
    22 tasks ran longer than 5 s of their 10 s timeout, with 4 none); activities wait on HTTP, so
    many run at once, but not so many that one tenant's throttling answers most of them."""

    max_concurrent_workflow_tasks: int = Field(default=4, ge=1)
    max_concurrent_activities: int = Field(default=50, ge=1)
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUELL_", env_nested_delimiter="__", extra="forbid", hide_input_in_errors=True
    )

    temporal: TemporalSettings = TemporalSettings()
    codec: CodecSettings = CodecSettings()
    tenants: list[TenantSettings] = []
    approval: ApprovalPolicy = ApprovalPolicy()
    thresholds: Thresholds = Thresholds()
    mode: Mode = "enforce"
    mfa_report_only: bool = True
    """require_admin_mfa creates its conditional access policy report-only unless this is false."""
    intake: IntakeSettings = IntakeSettings()
    poller: PollerSettings = PollerSettings()
    worker: WorkerSettings = WorkerSettings()
    notify_webhook: SecretStr | None = None
    """Optional incoming-webhook URL (Teams/Slack) for approval reminders and escalations."""
    log_level: str = "INFO"

    _blank_webhook = field_validator("notify_webhook", mode="before")(_blank_is_none)

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
