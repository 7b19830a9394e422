"""Microsoft identity platform, the part an app-only client uses: OpenID configuration and the
client-credentials token endpoint (client secret, or a client assertion JWT for certificates).

Tokens are random opaque strings bound to one audience (Graph or Exchange Online); answers and
errors have the fields and AADSTS codes that Entra ID uses.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

GRAPH = "https://graph.microsoft.com"
EXCHANGE = "https://outlook.office365.com"
AUDIENCES = (GRAPH, EXCHANGE)
TOKEN_LIFETIME = 3599
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str


class TokenStore:
    """Issued access tokens and the audience each is good for."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, audience: str) -> str:
        token = secrets.token_urlsafe(48)
        self._tokens[token] = (audience, time.monotonic() + TOKEN_LIFETIME)
        return token

    def audience(self, token: str) -> str | None:
        found = self._tokens.get(token)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]


def aad_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: {now}",
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status_code=status,
    )


def auth_router(tenant_names: set[str], credentials: Credentials, tokens: TokenStore) -> APIRouter:
    """Routes for `{base}/{tenant}/v2.0/.well-known/openid-configuration` and the token endpoint."""
    router = APIRouter()
    known = {name.casefold() for name in tenant_names}

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> JSONResponse:
        if tenant.casefold() not in known:
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{str(request.base_url).rstrip('/')}/{tenant}"
        return JSONResponse({
            "issuer": f"{base}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })

    @router.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> JSONResponse:
        return JSONResponse({"keys": []})  # access tokens are opaque here: nothing to verify

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        if tenant.casefold() not in known:
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.")
        client_id = form.get("client_id", "")
        if not hmac.compare_digest(client_id.encode(), credentials.client_id.encode()):
            return aad_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.")
        endpoint = f"{str(request.base_url).rstrip('/')}/{tenant}/oauth2/v2.0/token"
        refusal = _check_client(form, credentials, endpoint)
        if refusal is not None:
            return refusal
        audience = _audience(form.get("scope", ""))
        if isinstance(audience, JSONResponse):
            return audience
        return JSONResponse({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": tokens.issue(audience),
        })

    return router


def _check_client(form: dict[str, str], credentials: Credentials, endpoint: str) -> JSONResponse | None:
    if "client_secret" in form:
        if hmac.compare_digest(form["client_secret"].encode(), credentials.client_secret.encode()):
            return None
        return aad_error(401, "invalid_client", 7000215,
                         "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                         f"secret value, not the client secret ID, for a secret added to app '{credentials.client_id}'.")
    if "client_assertion" in form:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return aad_error(400, "invalid_request", 700025, "Client assertion type is not supported or is missing.")
        problem = _assertion_problem(form["client_assertion"], credentials.client_id, endpoint)
        if problem is None:
            return None
        return aad_error(401, "invalid_client", 50027, f"JWT token is invalid or malformed: {problem}.")
    return aad_error(401, "invalid_client", 7000216,
                     "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")


def _assertion_problem(assertion: str, client_id: str, endpoint: str) -> str | None:
    """What is wrong with a client assertion's structure and claims (its signature is not checked)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not parts[2]:
        return "a JWT has a header, a payload and a signature"
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, binascii.Error):
        return "header or payload is not base64url JSON"
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return "header and payload must be JSON objects"
    if header.get("alg") not in ("RS256", "PS256", "ES256"):
        return f"unsupported alg {header.get('alg')!r}"
    if not any(k in header for k in ("x5t", "x5t#S256", "kid")):
        return "the header names no certificate (x5t, x5t#S256 or kid)"
    if payload.get("iss") != client_id or payload.get("sub") != client_id:
        return "iss and sub must be the client id"
    if payload.get("aud") != endpoint:
        return f"aud must be the token endpoint {endpoint}"
    if not isinstance(payload.get("exp"), (int, float)) or payload["exp"] < time.time():
        return "the assertion has expired"
    return None


def _audience(scope: str) -> str | JSONResponse:
    resources = [s for s in scope.split() if s not in OIDC_SCOPES]
    if len(resources) != 1 or not resources[0].endswith("/.default"):
        return aad_error(400, "invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                         "value with /.default suffixed to the resource identifier (application ID URI).")
    resource = resources[0].removesuffix("/.default").rstrip("/")
    if resource not in AUDIENCES:
        return aad_error(400, "invalid_resource", 500011,
                         f"The resource principal named {resource} was not found in the tenant.")
    return resource
