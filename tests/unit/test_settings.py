"""Settings: the example file documents a loadable configuration; env wins; secrets stay hidden;
a mistake is an error that names the setting, never a silent default or an echoed secret."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import IntakeSettings, Settings, SettingsError, TenantSettings, load_settings

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


def test_a_configuration_error_names_the_setting_but_never_the_value(monkeypatch, tmp_path):
    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    tenant = {"tenant_id": "t", "client_id": "c", "client_secret": ["s3cr3t-value"]}  # a list: not a string
    monkeypatch.setenv("QUELL_TENANTS", json.dumps([tenant]))
    monkeypatch.setenv("QUELL_INTAKE__API_TOKENS", json.dumps({"relay": {"nested": "t0ken-value"}}))
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert "s3cr3t-value" in str(raw.value)  # pydantic's own message would print it
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "tenants.0.client_secret" in message and "intake.api_tokens.relay" in message
    assert "s3cr3t-value" not in message and "t0ken-value" not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.parametrize("url", ["http://graph.microsoft.com", "ftp://graph.microsoft.com", "graph.microsoft.com",
                                 "https://user:pass@graph.microsoft.com"])
def test_microsoft_endpoints_must_be_https(url):
    for field in ("graph_base_url", "exo_base_url", "authority_host"):
        with pytest.raises(ValidationError, match="https"):
            TenantSettings(tenant_id="t", client_id="c", client_secret="s", **{field: url})


def test_plain_http_is_allowed_to_a_loopback_emulator():
    for url in ("http://127.0.0.1:8443", "http://localhost:8443", "http://[::1]:8443", "https://127.0.0.1:8443"):
        assert TenantSettings(tenant_id="t", client_id="c", client_secret="s", graph_base_url=url).graph_base_url == url


def test_unknown_keys_empty_secrets_and_duplicate_tenants_are_errors():
    with pytest.raises(ValidationError, match="Extra inputs"):
        TenantSettings(tenant_id="t", client_id="c", client_secret="s", clientsecret="typo")
    with pytest.raises(ValidationError, match="empty"):
        TenantSettings(tenant_id="t", client_id="c", client_secret=" ")
    with pytest.raises(ValidationError, match="empty"):
        IntakeSettings(api_tokens={"relay": ""}, sources={"relay": {"tenants": ["t"]}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        IntakeSettings(api_token={"relay": "x"})
    tenant = TenantSettings(tenant_id="t", client_id="c", client_secret="s")
    with pytest.raises(ValidationError, match="twice"):
        Settings(tenants=[tenant, tenant])


@pytest.mark.parametrize(
    ("intake", "problem"),
    [
        ({"api_tokens": {"relay": "x"}}, "has no grant"),
        ({"hmac_secrets": {"sentinel": "x"}}, "has no grant"),
        ({"hmac_secrets": {"sentinel": "x"}, "sources": {"sentinel": {"tenants": ["t"]}},
          "analysts": {"soc1": {"tenants": ["t"]}}}, "no token"),
        ({"sources": {"relay": {"tenants": ["t"]}}}, "no credential"),
        ({"api_tokens": {"relay": "x"}, "sources": {"relay": {"tenants": []}}}, "at least 1"),
        ({"api_tokens": {"relay": "x"}, "sources": {"relay": {"tenants": ["elsewhere"]}}}, "not configured: elsewhere"),
        ({"ssl_certfile": "/etc/quell/intake.pem"}, "both"),
        ({"oidc": {"issuer": "https://login.microsoftonline.com/t/v2.0", "audience": "api://quell"}}, "at least one"),
        ({"oidc": {"issuer": "http://login.example/t/v2.0", "audience": "a", "analyst_role": "r"}}, "https"),
    ],
)
def test_intake_grants_must_name_credentials_and_configured_tenants(intake, problem):
    tenant = TenantSettings(tenant_id="t", client_id="c", client_secret="s")
    with pytest.raises(ValidationError, match=problem):
        Settings(tenants=[tenant], intake=intake)
