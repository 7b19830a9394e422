"""Analysts' Entra ID access tokens at the intake: real tokens from the emulator's token endpoint
(ROPC), verified with the keys of its JWKS. A valid approver token approves in the token's name;
a token that is forged, expired, for another audience or issuer answers 401, one without the
role or for another tenant 403, and no answer says which check failed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.client import Client

from activities import cases
from config.settings import OidcSettings, Settings, TenantSettings
from emulator.auth import ANALYST_ROLE, APPROVER_ROLE, APPROVERS_GROUP, USER_PASSWORD
from emulator.server import EmulatorHandle, running_emulator
from workers.intake import create_app
from tests.conftest import eventually
from tests.intake.conftest import DEFENDER, TENANT, intake_client, scenario, stack_for, temporal_down

AUDIENCE = "api://quell-intake"
OTHER_TENANT = "22222222-3333-4444-5555-666666666666"
CASE = f"connector-case/{TENANT}/ip/198.51.100.23"
APPROVAL = {"action_id": "a1", "plan_hash": "0123456789ab"}
REFUSED = {"detail": "authentication required"}


def with_reader(name: str = "tp-hijacked-hybrid-connector", mode: str = "dry_run"):
    """A scenario whose approvers are soc1 and soc2 and whose read-only analyst is reader."""
    found = scenario(name, mode)
    return found.model_copy(update={"approvals": found.approvals.model_copy(update={"analysts": ["reader@contoso.com"]})})


@pytest.fixture(scope="module")
def emulator(cert_dir: Path) -> Iterator[EmulatorHandle]:
    with running_emulator(with_reader(), cert_dir) as handle:
        yield handle


def oidc(emulator: EmulatorHandle, **changes: object) -> OidcSettings:
    return OidcSettings(**{"issuer": f"{emulator.base_url}/{TENANT}/v2.0", "audience": AUDIENCE,
                           "analyst_role": ANALYST_ROLE, "approver_role": APPROVER_ROLE, **changes})


def settings_with(oidc_settings: OidcSettings) -> Settings:
    tenants = [TenantSettings(tenant_id=t, client_id="c", client_secret="s") for t in (TENANT, OTHER_TENANT)]
    return Settings(tenants=tenants, intake={"oidc": oidc_settings})


@pytest.fixture
async def intake(emulator) -> AsyncIterator[httpx.AsyncClient]:
    """Temporal is down: an authorised request answers 503, a refused one 401 or 403."""
    async with intake_client(create_app(settings_with(oidc(emulator)), temporal_down)) as http:
        yield http


def sign_in(emulator: EmulatorHandle, username: str, scope: str = f"{AUDIENCE}/.default") -> str:
    form = {"grant_type": "password", "client_id": "quell-emulator", "username": username,
            "password": USER_PASSWORD, "scope": scope}
    response = httpx.post(f"{emulator.base_url}/{TENANT}/oauth2/v2.0/token", data=form, verify=str(emulator.ca_cert))
    response.raise_for_status()
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_the_roles_in_the_token_decide_what_its_user_may_do(emulator, intake):
    approver, reader = sign_in(emulator, "soc1@contoso.com"), sign_in(emulator, "reader@contoso.com")
    nobody = sign_in(emulator, "helpdesk.op@contoso.com")  # a user of the tenant without a quell role
    # 503: authenticated and allowed, the case service (Temporal) is what is down.
    assert (await intake.get(f"/v1/cases/{CASE}", headers=bearer(approver))).status_code == 503
    assert (await intake.post(f"/v1/cases/{CASE}/approvals", json=APPROVAL, headers=bearer(approver))).status_code == 503
    assert (await intake.get(f"/v1/cases/{CASE}/report", headers=bearer(reader))).status_code == 503
    assert (await intake.post(f"/v1/cases/{CASE}/approvals", json=APPROVAL, headers=bearer(reader))).status_code == 403
    assert (await intake.get(f"/v1/cases/{CASE}", headers=bearer(nobody))).status_code == 403
    assert (await intake.post(f"/v1/cases/{CASE}/approvals", json=APPROVAL, headers=bearer(nobody))).status_code == 403
    # An analyst's token posts no alerts; it reads only the tenant it was issued in (`tid`).
    alert = {"tenant": TENANT, "alert_id": "a-1", "ip": "198.51.100.23"}
    assert (await intake.post("/v1/alerts", json=alert, headers=bearer(approver))).status_code == 403
    other_case = f"connector-case/{OTHER_TENANT}/ip/198.51.100.23"
    assert (await intake.get(f"/v1/cases/{other_case}", headers=bearer(approver))).status_code == 403


async def test_a_group_can_grant_approval_instead_of_a_role(emulator):
    by_group = oidc(emulator, approver_role=None, analyst_role=None, approver_group=APPROVERS_GROUP)
    async with intake_client(create_app(settings_with(by_group), temporal_down)) as http:
        approver, reader = sign_in(emulator, "soc2@contoso.com"), sign_in(emulator, "reader@contoso.com")
        assert (await http.post(f"/v1/cases/{CASE}/approvals", json=APPROVAL, headers=bearer(approver))).status_code == 503
        assert (await http.get(f"/v1/cases/{CASE}", headers=bearer(reader))).status_code == 403


def _hs256(claims: dict, kid: str, key: bytes) -> str:
    """The algorithm-confusion forgery (PyJWT refuses to make it, so by hand): HMAC keyed with the public key."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _forgeries(emulator: EmulatorHandle) -> dict[str, str]:
    valid = sign_in(emulator, "soc1@contoso.com")
    header, payload, signature = valid.split(".")
    claims = jwt.decode(valid, options={"verify_signature": False})
    kid = jwt.get_unverified_header(valid)["kid"]
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = httpx.post(f"{emulator.base_url}/_emulator/user-token", verify=str(emulator.ca_cert),
                         json={"username": "soc1@contoso.com", "audience": AUDIENCE, "expires_in": -120})
    public_jwk = httpx.get(f"{emulator.base_url}/{TENANT}/discovery/v2.0/keys", verify=str(emulator.ca_cert))
    return {
        "wrong audience": sign_in(emulator, "soc1@contoso.com", scope="api://another-app/.default"),
        "expired": expired.json()["access_token"],
        "signed with another key": jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": kid}),
        "claims changed after signing": f"{header}.{_b64({**claims, 'upn': 'ciso@contoso.com'})}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{payload}.",
        "HS256 with the public key": _hs256(claims, kid, json.dumps(public_jwk.json()["keys"][0]).encode()),
        "unknown key id": jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": "zq-probe-kid"}),
        "not a JWT": "zq-probe-token",
    }


async def test_forged_expired_and_foreign_tokens_are_a_401_that_says_nothing_more(emulator, intake):
    for reason, token in _forgeries(emulator).items():
        for method, path in (("GET", f"/v1/cases/{CASE}"), ("POST", f"/v1/cases/{CASE}/approvals")):
            response = await intake.request(method, path, json=APPROVAL, headers=bearer(token))
            assert response.status_code == 401, reason
            assert response.json() == REFUSED, reason


async def test_a_token_of_another_issuer_is_a_401(emulator):
    # Same keys (so the signature verifies), but the deployment trusts Entra ID's own issuer.
    entra = oidc(emulator, issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
                 jwks_url=f"{emulator.base_url}/{TENANT}/discovery/v2.0/keys")
    async with intake_client(create_app(settings_with(entra), temporal_down)) as http:
        response = await http.get(f"/v1/cases/{CASE}", headers=bearer(sign_in(emulator, "soc1@contoso.com")))
    assert response.status_code == 401 and response.json() == REFUSED


async def test_an_unreachable_identity_provider_is_a_503(emulator):
    unreachable = oidc(emulator, jwks_url="https://127.0.0.1:9/keys")
    async with intake_client(create_app(settings_with(unreachable), temporal_down)) as http:
        response = await http.get(f"/v1/cases/{CASE}", headers=bearer(sign_in(emulator, "soc1@contoso.com")))
    assert response.status_code == 503 and "retry" in response.json()["detail"]


async def test_an_approver_signed_in_to_entra_approves_in_the_name_the_token_carries(client: Client, cert_dir):
    found = with_reader("tp-hijacked-hybrid-connector", mode="enforce")
    async with stack_for(client, found, cert_dir, approval_timeout=120) as stack:
        settings = stack.settings.model_copy(update={"intake": stack.settings.intake.model_copy(
            update={"oidc": oidc(stack.emulator)})})

        async def connect() -> Client:
            return client

        async with intake_client(create_app(settings, connect)) as http:
            posted = await http.post("/v1/alerts", params={"tenant": TENANT}, json=found.alert, headers=DEFENDER)
            case = posted.json()["accepted"][0]["case_id"]
            try:
                reader = bearer(sign_in(stack.emulator, "reader@contoso.com"))
                summary = await eventually(lambda: http.get(f"/v1/cases/{case}", headers=reader),
                                           lambda r: r.status_code == 200 and bool(r.json()["pending"]))
                pending = next(p for p in summary.json()["pending"] if p["policy"] == "approve")
                decision = {"action_id": pending["action_id"], "plan_hash": pending["plan_hash"]}

                refused = await http.post(f"/v1/cases/{case}/approvals", json=decision, headers=reader)
                assert refused.status_code == 403
                approver = bearer(sign_in(stack.emulator, "soc1@contoso.com"))
                receipt = await http.post(f"/v1/cases/{case}/approvals", json=decision, headers=approver)
                assert receipt.status_code == 200, receipt.text
                assert receipt.json()["approver"] == "soc1@contoso.com"
                assert receipt.json()["approvals"] == ["soc1@contoso.com"]
                report = await http.get(f"/v1/cases/{case}/report", headers=reader)
                assert report.status_code == 200
            finally:
                await cases.handle(client, case).terminate("test done")
