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

from workflows import signatures
from workflows.types import ApprovalPolicy, ApproverKey, Mode, Organization, PolicyKind, Thresholds, Trust

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
    signing_key: SecretStr | None = None
    """PEM (PKCS#8, unencrypted) Ed25519 private key the approvals API signs decisions with, in
    the name of the caller it authenticated; its public key is `approval.api_public_key`."""
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


class ApprovalSettings(BaseModel):
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUELL_", env_nested_delimiter="__", extra="forbid"
    )

    temporal: TemporalSettings = TemporalSettings()
    tenants: list[TenantSettings] = []
    approval: ApprovalSettings = ApprovalSettings()
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



def current_approval() -> ApprovalSettings:
    """The `[approval]` settings as the config file and environment say now (read on every call)."""
    return Settings().approval
