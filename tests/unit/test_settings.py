"""Settings: the example file documents a loadable configuration; env wins; secrets stay hidden."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import Settings, TenantSettings

EXAMPLE = Path(__file__).parents[2] / "config" / "quell.example.toml"


def test_example_config_loads(monkeypatch):
    monkeypatch.setenv("QUELL_CONFIG", str(EXAMPLE))
    settings = Settings()
    assert settings.tenants[0].organization.connector_admins == ["exadmin@contoso.com"]
    assert settings.approval.for_action("remove_connector") == "two_person"
    assert settings.approval.for_action("disable_connector") == "approve"
    assert settings.thresholds.mail_per_hour == 100


def test_environment_wins_over_toml(monkeypatch):
    monkeypatch.setenv("QUELL_CONFIG", str(EXAMPLE))
    monkeypatch.setenv("QUELL_TEMPORAL__ADDRESS", "temporal:7233")
    monkeypatch.setenv("QUELL_MODE", "dry_run")
    settings = Settings()
    assert settings.temporal.address == "temporal:7233"
    assert settings.mode == "dry_run"


def test_secrets_never_print():
    tenant = TenantSettings(tenant_id="t", client_id="c", client_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(tenant)
    assert "s3cr3t-value" not in tenant.model_dump_json()


def test_a_tenant_needs_exactly_one_credential():
    with pytest.raises(ValidationError, match="exactly one"):
        TenantSettings(tenant_id="t", client_id="c")
    with pytest.raises(ValidationError, match="exactly one"):
        TenantSettings(tenant_id="t", client_id="c", client_secret="s", certificate_path="/x.pem")


def test_blank_notify_webhook_means_none(monkeypatch, tmp_path):
    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("QUELL_NOTIFY_WEBHOOK", "")
    assert Settings().notify_webhook is None


def test_the_approvals_api_key_pair_must_match(monkeypatch, tmp_path):
    from workers.analysts import ApiKey

    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    mine, other = ApiKey.generate(), ApiKey.generate()
    settings = Settings(intake={"signing_key": mine.private_pem}, approval={"api_public_key": mine.public_key})
    assert mine.private_pem.get_secret_value() not in settings.model_dump_json()
    with pytest.raises(ValidationError, match="not the public key of intake.signing_key"):
        Settings(intake={"signing_key": mine.private_pem}, approval={"api_public_key": other.public_key})
    with pytest.raises(ValidationError, match="has no public key"):
        Settings(approval={"approvers": ["soc1@contoso.com"]})
    assert Settings(approval={"approvers": ["soc1@contoso.com"], "allow_unsigned": True}).approval.accounts() == [
        "soc1@contoso.com"]
