"""`quell keys init`: a private key only its owner can read, optionally encrypted, and the line
the config needs; `quell approve` and `quell sign` refuse to go on without a usable key."""

from __future__ import annotations

import re
import stat

from typer.testing import CliRunner

from config.settings import ApprovalSettings
from workers import key_files
from workers.cli import app
from workflows import signatures
from workflows.types import Decision


def quell(tmp_path, *args: str, **env: str):
    return CliRunner().invoke(app, list(args), env={"XDG_CONFIG_HOME": str(tmp_path),
                                                    "QUELL_CONFIG": str(tmp_path / "absent.toml"), **env})


def test_keys_init_writes_a_0600_key_and_prints_the_config_entry(tmp_path):
    result = quell(tmp_path, "keys", "init", "--as", "soc1@contoso.com")
    assert result.exit_code == 0, result.output
    path = tmp_path / "quell" / "soc1@contoso.com.ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = re.search(r'\{ account = "(.+)", public_key = "(ed25519:.+)" \}', result.output)
    assert entry and entry.group(1) == "soc1@contoso.com"
    key = key_files.read_key(path, None)
    assert signatures.public_key_text(key.public_key()) == entry.group(2)
    ApprovalSettings(approvers=[{"account": entry.group(1), "public_key": entry.group(2)}])  # the line loads
    again = quell(tmp_path, "keys", "init", "--as", "soc1@contoso.com")
    assert again.exit_code == 1 and "not overwritten" in again.output


def test_a_passphrase_protected_key_needs_its_passphrase(tmp_path):
    out = tmp_path / "soc2.pem"
    made = quell(tmp_path, "keys", "init", "--as", "soc2@contoso.com", "--out", str(out), "--passphrase",
                 QUELL_KEY_PASSPHRASE="correct horse")
    assert made.exit_code == 0, made.output
    assert key_files.is_encrypted(out)
    signed = quell(tmp_path, "sign", "connector-case/t/x", "a1", "--approve", "--as", "soc2@contoso.com",
                   "--key", str(out), "--plan", "abc123", QUELL_KEY_PASSPHRASE="correct horse")
    assert signed.exit_code == 0, signed.output
    decision = Decision.model_validate_json(signed.output)
    public = made.output.split('public_key = "')[1].split('"')[0]
    assert signatures.signature_valid(decision, public) and decision.key_id == signatures.key_id(public)
    wrong = quell(tmp_path, "sign", "connector-case/t/x", "a1", "--approve", "--as", "soc2@contoso.com",
                  "--key", str(out), "--plan", "abc123", QUELL_KEY_PASSPHRASE="wrong")
    assert wrong.exit_code == 2 and "cannot read the key" in wrong.output


def test_no_key_no_decision(tmp_path):
    result = quell(tmp_path, "approve", "connector-case/t/x", "a1", "--as", "soc9@contoso.com", "--plan", "abc")
    assert result.exit_code == 2 and "quell keys init --as soc9@contoso.com" in result.output
