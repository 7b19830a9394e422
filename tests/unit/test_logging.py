"""Log redaction: secrets at any depth, in headers, URLs, messages and exception traces never print,
and what is not secret still does. The logging setup runs in a subprocess, as a quell process runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = r'''
import logging
import structlog
from pydantic import SecretStr
from workers.logging import configure_logging

configure_logging("INFO")
log = structlog.get_logger("quell.test")
log.info("calling graph", case="case-id-1",
         request={"headers": {"Authorization": "Bearer SEKRIT-bearer-1", "Accept": "application/json"}},
         headers=[("authorization", "Basic SEKRIT-basic-2"), ("x-request-id", "req-7")],
         signature="SEKRIT-3", api_key="SEKRIT-4",
         webhook_url="https://contoso.webhook.office.com/webhookb2/SEKRIT-5?sig=SEKRIT-6",
         url="https://graph.microsoft.com/v1.0/security/alerts_v2?code=SEKRIT-7&$top=5&sig=SEKRIT-8",
         items=[{"user": "soc1@contoso.com", "password": "SEKRIT-15"}],
         secret_object=SecretStr("SEKRIT-16"), delivery="sha256=" + "ab" * 32)
log.warning("token refused: Bearer SEKRIT-bearer-9, body client_secret=SEKRIT-10&grant_type=client_credentials")
logging.getLogger("azure.identity").warning("POST token body: client_secret=%s&scope=x", "SEKRIT-11")
log.info("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJTRUtSSVQifQ.SEKRITsig13 and https://svc:SEKRIT-14@relay.contoso.com/x")
try:
    raise ValueError("could not sign in with password=SEKRIT-12")
except ValueError:
    log.exception("sign-in failed")
'''


def test_secrets_never_reach_the_log_and_the_rest_does():
    ran = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stderr.splitlines()]
    assert len(lines) == 5
    assert "SEKRIT" not in ran.stderr
    assert "ab" * 32 not in ran.stderr  # an HMAC signature, whatever the key
    first = lines[0]
    assert first["case"] == "case-id-1" and first["request"]["headers"]["Accept"] == "application/json"
    assert first["headers"] == [["authorization", "[redacted]"], ["x-request-id", "req-7"]]
    assert first["url"] == ("https://graph.microsoft.com/v1.0/security/alerts_v2?code=[redacted]&$top=5&sig=[redacted]")
    assert first["items"] == [{"user": "soc1@contoso.com", "password": "[redacted]"}]
    assert "grant_type=client_credentials" in lines[1]["event"]
    assert "relay.contoso.com/x" in lines[3]["event"]
    assert "ValueError" in lines[4]["exception"]
