"""Certificates, the token endpoint, audiences, and the real Microsoft clients against the emulator."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import jwt
from azure.identity.aio import ClientSecretCredential
from cryptography import x509
from emu_client import EXO_SCOPE, GRAPH_SCOPE, TENANT, Api, https
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from emulator.auth import ANALYST_ROLE, APPROVER_ROLE, USER_PASSWORD
from emulator.scenario import Scenario
from emulator.server import EmulatorHandle, running_emulator
from emulator.tls import ensure_certificates


def test_certificates_are_reused_and_reissued_when_missing(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca, server = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = ensure_certificates(tmp_path)
    assert again.ca_cert.read_bytes() == ca and again.server_cert.read_bytes() == server
    cert = x509.load_pem_x509_certificate(server)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    first.server_key.unlink()
    renewed = ensure_certificates(tmp_path)
    assert renewed.ca_cert.read_bytes() == ca  # same CA, new server certificate
    assert renewed.server_cert.read_bytes() != server
    x509.load_pem_x509_certificate(renewed.server_cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca)
    )


def test_openid_configuration_points_at_the_emulator(emulator: EmulatorHandle) -> None:
    with https(emulator) as http:
        config = http.get(f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
        assert http.get("/99999999-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration").status_code == 400
    assert config["issuer"] == f"{emulator.base_url}/{TENANT}/v2.0"
    assert config["token_endpoint"] == f"{emulator.base_url}/{TENANT}/oauth2/v2.0/token"


def token_request(emulator: EmulatorHandle, **form: str) -> httpx.Response:
    body = {"grant_type": "client_credentials", "client_id": "quell-emulator", "client_secret": "emulator-secret",
            "scope": GRAPH_SCOPE, **form}
    with https(emulator) as http:
        return http.post(f"/{TENANT}/oauth2/v2.0/token", data={k: v for k, v in body.items() if v is not None})


def test_token_endpoint_answers_like_entra_id(emulator: EmulatorHandle) -> None:
    ok = token_request(emulator).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] > 3000 and ok["access_token"]
    wrong = token_request(emulator, client_secret="guess")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.json()["error_codes"] == [7000215]
    unknown_app = token_request(emulator, client_id="someone-else")
    assert unknown_app.status_code == 400 and unknown_app.json()["error"] == "unauthorized_client"
    bad_scope = token_request(emulator, scope="User.Read")
    assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"
    other_api = token_request(emulator, scope="https://management.azure.com/.default")
    assert other_api.json()["error"] == "invalid_resource"


def assertion(emulator: EmulatorHandle, **claims: object) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    payload = {"aud": f"{emulator.base_url}/{TENANT}/oauth2/v2.0/token", "iss": "quell-emulator",
               "sub": "quell-emulator", "exp": time.time() + 600, "jti": "1", **claims}
    return f"{part({'alg': 'RS256', 'typ': 'JWT', 'x5t': 'abc'})}.{part(payload)}.c2lnbmF0dXJl"


def test_certificate_path_client_assertion_is_checked_for_structure(emulator: EmulatorHandle) -> None:
    kind = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    good = token_request(emulator, client_secret=None, client_assertion_type=kind, client_assertion=assertion(emulator))
    assert good.status_code == 200
    expired = token_request(emulator, client_secret=None, client_assertion_type=kind,
                            client_assertion=assertion(emulator, exp=time.time() - 5))
    assert expired.status_code == 401 and "expired" in expired.json()["error_description"]
    garbage = token_request(emulator, client_secret=None, client_assertion_type=kind, client_assertion="not-a-jwt")
    assert garbage.status_code == 401


def test_each_api_accepts_only_its_own_audience(api: Api) -> None:
    graph_with_exo_token = api.http.get("/v1.0/users/exadmin@contoso.com",
                                        headers={"Authorization": f"Bearer {api.exo_token}"})
    assert graph_with_exo_token.status_code == 401
    assert graph_with_exo_token.json()["error"]["code"] == "InvalidAuthenticationToken"
    exo_with_graph_token = api.http.post(
        f"/adminapi/beta/{TENANT}/InvokeCommand", json={"CmdletInput": {"CmdletName": "Get-AcceptedDomain"}},
        headers={"Authorization": f"Bearer {api.graph_token}"},
    )
    assert exo_with_graph_token.status_code == 401
    assert api.http.get("/v1.0/users/exadmin@contoso.com").status_code == 401
    assert api.graph("GET", "/users/exadmin@contoso.com").status_code == 200


async def test_azure_identity_and_msgraph_sdk_work_unchanged(emulator: EmulatorHandle) -> None:
    # The root conftest made this process trust the emulator CA (SSL_CERT_FILE), as the runner does.
    credential = ClientSecretCredential(TENANT, "quell-emulator", "emulator-secret",
                                        authority=emulator.base_url, disable_instance_discovery=True)
    try:
        exo_token = await credential.get_token(EXO_SCOPE)
        assert exo_token.token and exo_token.expires_on > time.time() + 3000
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
        http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient())
        adapter = GraphRequestAdapter(auth, http)
        adapter.base_url = f"{emulator.base_url}/v1.0"
        try:
            user = await GraphServiceClient(request_adapter=adapter).users.by_user_id("helpdesk.op@contoso.com").get()
        finally:
            await http.aclose()
    finally:
        await credential.close()
    assert user is not None and user.id == "2a7d5b20-0000-4000-8000-000000000002"
    assert user.display_name == "Helpdesk Operator"


def user_sign_in(emulator: EmulatorHandle, username: str, password: str = USER_PASSWORD,
                 scope: str = "api://quell-intake/.default") -> httpx.Response:
    form = {"grant_type": "password", "client_id": "quell-emulator", "username": username, "password": password,
            "scope": scope}
    with https(emulator) as http:
        return http.post(f"/{TENANT}/oauth2/v2.0/token", data={k: v for k, v in form.items() if v is not None})


def test_user_tokens_are_rs256_jwts_verified_by_the_jwks_the_discovery_document_names(emulator: EmulatorHandle) -> None:
    with https(emulator) as http:
        config = http.get("/contoso.com/v2.0/.well-known/openid-configuration").json()  # a domain names the tenant too
        keys = http.get(f"/{TENANT}/discovery/v2.0/keys").json()["keys"]
    assert config["issuer"] == f"{emulator.base_url}/{TENANT}/v2.0"  # always by id, as Entra ID does
    assert [(k["kty"], k["use"]) for k in keys] == [("RSA", "sig")]
    answer = user_sign_in(emulator, "SOC1@contoso.com")
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    token = answer.json()["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": keys[0]["kid"]}
    key = jwt.PyJWKClient(config["jwks_uri"]).get_signing_key_from_jwt(token)  # trusts the CA via SSL_CERT_FILE
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="api://quell-intake", issuer=config["issuer"])
    assert claims["tid"] == TENANT and claims["upn"] == claims["preferred_username"] == "soc1@contoso.com"
    assert claims["roles"] == [ANALYST_ROLE, APPROVER_ROLE] and claims["exp"] - claims["iat"] == 3599
    helpdesk = jwt.decode(user_sign_in(emulator, "helpdesk.op@contoso.com").json()["access_token"], key,
                          algorithms=["RS256"], audience="api://quell-intake")
    assert "roles" not in helpdesk and helpdesk["oid"] == "2a7d5b20-0000-4000-8000-000000000002"


def test_user_sign_in_fails_as_entra_id_fails_it(emulator: EmulatorHandle, example: Scenario, cert_dir: Path) -> None:
    def code(response: httpx.Response) -> tuple[int, str, int]:
        return response.status_code, response.json()["error"], response.json()["error_codes"][0]

    assert code(user_sign_in(emulator, "nobody@contoso.com")) == (400, "invalid_grant", 50034)
    assert code(user_sign_in(emulator, "soc1@contoso.com", password="guess")) == (400, "invalid_grant", 50126)
    assert code(user_sign_in(emulator, "soc1@contoso.com", password=None)) == (400, "invalid_request", 900144)
    assert code(user_sign_in(emulator, "soc1@contoso.com", scope=GRAPH_SCOPE)) == (400, "invalid_resource", 500011)
    users = [u.model_copy(update={"accountEnabled": False}) for u in example.tenant.users]
    disabled = example.model_copy(update={"tenant": example.tenant.model_copy(update={"users": users})})
    with running_emulator(disabled, cert_dir) as other:
        assert code(user_sign_in(other, "helpdesk.op@contoso.com")) == (400, "invalid_grant", 50057)
