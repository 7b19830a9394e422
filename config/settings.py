"""quell settings: environment (`QUELL_…`, `__` for nesting) ahead of a TOML file.

The TOML file is `quell.toml` in the working directory, or the path in `QUELL_CONFIG`.
`config/quell.example.toml` documents every setting. Secrets are `SecretStr`: they print as
`**********` and never reach logs, workflow history or errors; `load_settings` reports a
configuration error without the values it refused.
"""

from __future__ import annotations

import ipaddress
import os
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


class TemporalSettings(BaseModel):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "quell-cases"


class TenantSettings(BaseModel):
    """One Microsoft 365 tenant quell responds for, with its app registration."""

    model_config = ConfigDict(extra="forbid")

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


class SourceGrant(BaseModel):
    """What an alert source (an `api_tokens` or `hmac_secrets` name) may do: post alerts for these tenants."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[str] = Field(min_length=1)


class AnalystGrant(BaseModel):
    """What a static-token analyst (an `api_tokens` name) may do: read these tenants' cases and
    reports, and approve their actions if `approve` (the case's `approval.approvers` still applies)."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[str] = Field(min_length=1)
    approve: bool = False


class OidcSettings(BaseModel):
    """Analysts signing in with OpenID Connect (Microsoft Entra ID): the intake accepts their
    access tokens. The approver is the token's `upn` (else `preferred_username`); it may read the
    cases of the tenant in its `tid` claim and, with the approver role or group, approve them."""

    model_config = ConfigDict(extra="forbid")

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


class IntakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class PollerSettings(BaseModel):
    """The alerts_v2 poller: one Temporal Schedule per tenant (`quell poller install`)."""

    every: timedelta = timedelta(minutes=1)
    initial_lookback: timedelta = timedelta(hours=1)
    """How far back the first pass of a new schedule looks (there is no cursor yet)."""
    overlap: timedelta = timedelta(minutes=5)
    """Each pass re-reads this much before its cursor (alerts are indexed late) and skips the
    alert ids it already fed, so a late alert is neither missed nor fed twice."""
    max_pages: int = 20
    """Graph pages (`@odata.nextLink`) one pass follows at most; the rest waits for the next pass."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUELL_", env_nested_delimiter="__", extra="forbid"
    )

    temporal: TemporalSettings = TemporalSettings()
    tenants: list[TenantSettings] = []
    approval: ApprovalPolicy = ApprovalPolicy()
    thresholds: Thresholds = Thresholds()
    mode: Mode = "enforce"
    mfa_report_only: bool = True
    """require_admin_mfa creates its conditional access policy report-only unless this is false."""
    intake: IntakeSettings = IntakeSettings()
    poller: PollerSettings = PollerSettings()
    notify_webhook: SecretStr | None = None
    """Optional incoming-webhook URL (Teams/Slack) for approval reminders and escalations."""
    log_level: str = "INFO"

    @field_validator("notify_webhook", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

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
