"""Settings: the example file documents a loadable configuration; env wins; secrets stay hidden;
a mistake is an error that names the setting, never a silent default or an echoed secret."""

import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import (
    CodecSettings,
    IntakeSettings,
    QuotaSettings,
    Settings,
    SettingsError,
    TemporalSettings,
    TenantSettings,
    load_settings,
)
from emulator.scenario import MICROSOFT_QUOTAS
from workflows.types import FamilyQuota

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


def test_blank_notify_webhooks_mean_none(monkeypatch, tmp_path):
    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("QUELL_NOTIFY__TEAMS_WEBHOOK", "")
    monkeypatch.setenv("QUELL_NOTIFY_WEBHOOK", "")  # the old setting, left blank by a compose file
    assert Settings().notify.teams_webhook is None


@pytest.mark.parametrize("where", ["environment", "file"])
def test_the_old_notify_webhook_is_refused_with_where_it_moved_and_without_its_value(monkeypatch, tmp_path, where):
    config = tmp_path / "quell.toml"
    config.write_text('notify_webhook = "https://contoso.webhook.office.com/S3CRET"\n' if where == "file" else "")
    monkeypatch.setenv("QUELL_CONFIG", str(config))
    if where == "environment":
        monkeypatch.setenv("QUELL_NOTIFY_WEBHOOK", "https://contoso.webhook.office.com/S3CRET")
    with pytest.raises(SettingsError, match="notify.teams_webhook and notify.slack_webhook") as refused:
        load_settings()
    assert "S3CRET" not in str(refused.value)


def test_temporal_tls_turns_on_with_any_tls_option_and_an_api_key_implies_it():
    assert not TemporalSettings().uses_tls
    assert TemporalSettings(tls=True).uses_tls
    assert TemporalSettings(api_key="cloud-key").uses_tls
    assert TemporalSettings(server_ca_cert_path="/ca.pem").uses_tls
    assert TemporalSettings(api_key="").api_key is None  # a blank environment variable is no key


@pytest.mark.parametrize(
    ("temporal", "message"),
    [
        ({"client_key_path": "/k.pem"}, "client_key_path is set without temporal.client_cert_path"),
        ({"client_cert_path": "/c.pem"}, "client_cert_path is set without temporal.client_key_path"),
        ({"tls": False, "api_key": "s3cr3t-api-key"}, "TLS is needed by temporal.api_key"),
    ],
)
def test_temporal_settings_refuse_what_cannot_work_without_echoing_secrets(temporal, message):
    with pytest.raises(ValidationError, match=message) as refused:
        Settings(temporal=temporal)
    assert "s3cr3t" not in str(refused.value)


def test_codec_keys_are_32_bytes_and_the_current_one_exists_and_errors_hide_them():
    key = base64.b64encode(b"k" * 32).decode()
    assert CodecSettings(current="k1", keys={"k1": key}).key_bytes() == {"k1": b"k" * 32}
    assert CodecSettings(current="k1", keys={"k1": key + "\n"}).key_bytes() == {"k1": b"k" * 32}  # a secret file's newline
    assert not CodecSettings().enabled
    short = base64.b64encode(b"s3cr3t-short-key").decode()
    for keys, current, message in [
        ({"k1": short}, "k1", "codec key k1 is not the base64 of 32 bytes"),
        ({"k1": "s3cr3t not base64!"}, "k1", "codec key k1 is not the base64 of 32 bytes"),
        ({"k1": key}, None, "codec.current must name"),
        ({"k1": key}, "k2", "codec.current = 'k2' names no key"),
    ]:
        with pytest.raises(ValidationError, match=message) as refused:
            Settings(codec={"keys": keys, "current": current})
        assert "s3cr3t" not in str(refused.value) and short not in str(refused.value) and key not in str(refused.value)


def test_codec_keys_come_from_the_environment(monkeypatch, tmp_path):
    key = base64.b64encode(b"e" * 32).decode()
    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("QUELL_CODEC__CURRENT", "k2")
    monkeypatch.setenv("QUELL_CODEC__KEYS__K2", key)
    assert Settings().codec.key_bytes() == {"k2": b"e" * 32}


def test_a_configuration_error_names_the_setting_but_never_the_value(monkeypatch, tmp_path):
    monkeypatch.setenv("QUELL_CONFIG", str(tmp_path / "absent.toml"))
    tenant = {"tenant_id": "t", "client_id": "c", "client_secret": ["s3cr3t-value"]}  # a list: not a string
    monkeypatch.setenv("QUELL_TENANTS", json.dumps([tenant]))
    monkeypatch.setenv("QUELL_INTAKE__API_TOKENS", json.dumps({"relay": {"nested": "t0ken-value"}}))
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert "s3cr3t-value" not in str(raw.value)  # hide_input_in_errors
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


def test_the_example_paces_as_the_defaults_and_the_environment_changes_a_pace(monkeypatch):
    monkeypatch.setenv("QUELL_CONFIG", str(EXAMPLE))
    assert Settings().quotas == QuotaSettings()
    monkeypatch.setenv("QUELL_QUOTAS__HUNTING__PER_MINUTE", "20")
    monkeypatch.setenv("QUELL_QUOTAS__ENABLED", "false")
    settings = Settings()
    assert settings.quotas.hunting == FamilyQuota(per_minute=20, burst=5) and not settings.quotas.enabled
    monkeypatch.setenv("QUELL_QUOTAS__HUNTING__PER_MINUTE", "-7")
    with pytest.raises(SettingsError, match=r"quotas\.hunting\.per_minute: Input should be greater than 0") as refused:
        load_settings()
    assert "-7" not in str(refused.value)


def test_the_default_pace_stays_under_microsofts_documented_limits():
    """A bucket lets at most burst − 1 + per_minute × W calls through in any W minutes."""
    for family, pace in QuotaSettings().families().items():
        limit = getattr(MICROSOFT_QUOTAS, family)
        if limit is None:  # no documented limit (the rest of InvokeCommand)
            continue
        assert pace.burst - 1 + pace.per_minute * limit.window_s / 60 < limit.calls, family
