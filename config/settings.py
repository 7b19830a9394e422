"""quell settings: environment (`QUELL_…`, `__` for nesting) ahead of a TOML file.

The TOML file is `quell.toml` in the working directory, or the path in `QUELL_CONFIG`.
`config/quell.example.toml` documents every setting. Secrets are `SecretStr`: they print as
`**********` and never reach logs, workflow history or errors.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workflows.types import ApprovalPolicy, Mode, Organization, Thresholds

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXO_SCOPE = "https://outlook.office365.com/.default"


class TemporalSettings(BaseModel):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "quell-cases"


class TenantSettings(BaseModel):
    """One Microsoft 365 tenant quell responds for, with its app registration."""

    tenant_id: str
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


class IntakeSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8088
    api_tokens: dict[str, SecretStr] = {}
    """Bearer tokens for the intake API, by the caller's name (the name is what the audit shows)."""
    hmac_secrets: dict[str, SecretStr] = {}
    """Shared secrets of alert sources that sign their webhooks (HMAC-SHA256), by source name."""
    max_body_bytes: int = 1_000_000
    related_window: timedelta = timedelta(hours=24)
    """A case for the same tenant and key that closed within this window is named in a new case's
    `related_cases`, and an alert such a case already absorbed is acknowledged without a new case."""


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

