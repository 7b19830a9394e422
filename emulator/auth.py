"""Microsoft identity platform: OpenID configuration, the signing keys (JWKS) and the token
endpoint, for the app (client credentials: a client secret, or a client assertion JWT for
certificates) and for the scenario's analysts (resource owner password credentials, ROPC).

App tokens are RS256 JWTs (v1.0 claims) bound to one audience (Graph or Exchange Online), with the
app roles the app holds on it in `roles` (emulator/principals.py). User
tokens are RS256 JWTs for an application ID URI (`api://...`), signed with the emulator's key
and verifiable from its JWKS like Entra ID v2.0 access tokens: `iss`, `aud`, `tid`, `oid`,
`upn`, `preferred_username`, app `roles` and `groups`. The approvers of the scenario hold
`APPROVER_ROLE` and `ANALYST_ROLE` (group `APPROVERS_GROUP`), its read-only analysts
`ANALYST_ROLE` (group `ANALYSTS_GROUP`), other users of the tenant no role. Every one of them
signs in with `USER_PASSWORD`. Answers and errors have the fields and AADSTS codes Entra ID uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from emulator.principals import AppRegistration

GRAPH = "https://graph.microsoft.com"
EXCHANGE = "https://outlook.office365.com"
AUDIENCES = (GRAPH, EXCHANGE)
TOKEN_LIFETIME = 3599
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
USER_PASSWORD = "emulator-user-password"
ANALYST_ROLE = "Quell.Analyst"
APPROVER_ROLE = "Quell.Approver"
ANALYSTS_GROUP = str(uuid.uuid5(uuid.NAMESPACE_URL, "quell-emulator/groups/analysts"))
APPROVERS_GROUP = str(uuid.uuid5(uuid.NAMESPACE_URL, "quell-emulator/groups/approvers"))


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Bearer:
    """What an issued access token is good for, and which app it was issued to."""

    audience: str
    app: str


class TokenStore:
    """Issued access tokens: the audience each is good for and the app that holds it."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Bearer, float]] = {}

    def issue(self, bearer: Bearer, token: str) -> str:
        self._tokens[token] = (bearer, time.monotonic() + TOKEN_LIFETIME)
        return token

    def bearer(self, token: str) -> Bearer | None:
        found = self._tokens.get(token)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]


@dataclass(frozen=True)
class UserAccount:
    upn: str
    object_id: str
    display_name: str = ""
    enabled: bool = True
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass
class Directory:
    """The tenant's users that sign in, and the key their access tokens are signed with."""

    tenant_id: str
    users: dict[str, UserAccount] = field(default_factory=dict)
    """By userPrincipalName, casefolded."""

    def find(self, upn: str) -> UserAccount | None:
        return self.users.get(upn.casefold())

    def add(self, user: UserAccount) -> None:
        self.users[user.upn.casefold()] = user

    def grant(self, upn: str, roles: tuple[str, ...], groups: tuple[str, ...]) -> None:
        """Give a user (added when the tenant does not list it) app roles and group memberships."""
        user = self.find(upn) or UserAccount(
            upn, str(uuid.uuid5(uuid.NAMESPACE_URL, f"quell-emulator/users/{upn.casefold()}")), upn.split("@")[0]
        )
        self.add(replace(user, roles=roles, groups=groups))

    @cached_property
    def _key(self) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)  # made at first use

    @cached_property
    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
        kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        return {"kty": "RSA", "use": "sig", "kid": kid, "n": jwk["n"], "e": jwk["e"]}

    def access_token(self, user: UserAccount, issuer: str, audience: str, scopes: list[str], client_id: str,
                     lifetime_s: int = TOKEN_LIFETIME) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "tid": self.tenant_id,
            "oid": user.object_id,
            "sub": hashlib.sha256(f"{user.object_id}/{audience}".encode()).hexdigest()[:43],
            "upn": user.upn,
            "preferred_username": user.upn,
            "name": user.display_name,
            "azp": client_id,
            "scp": " ".join(scopes),
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if user.roles:
            claims["roles"] = list(user.roles)
        if user.groups:
            claims["groups"] = list(user.groups)
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.public_jwk["kid"]})

    def app_token(self, app: AppRegistration, audience: str) -> str:
        """An app-only access token as Entra ID issues one for Graph or Exchange (v1.0 claims): the
        service principal's ids and, in `roles`, the app roles it holds on that API."""
        now = int(time.time())
        sts = f"https://sts.windows.net/{self.tenant_id}/"
        claims: dict[str, Any] = {
            "aud": audience, "iss": sts, "idp": sts, "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME,
            "appid": app.client_id, "appidacr": "1", "app_displayname": app.display_name, "idtyp": "app",
            "oid": app.object_id, "sub": app.object_id, "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16), "ver": "1.0",
        }
        if roles := app.roles(audience):
            claims["roles"] = roles
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.public_jwk["kid"]})


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


def issuer(request: Request, tenant_id: str) -> str:
    """The tenant's issuer, always named by its id (as Entra ID does, whatever name the path used)."""
    return f"{str(request.base_url).rstrip('/')}/{tenant_id}/v2.0"


def auth_router(tenant_names: set[str], credentials: Credentials, tokens: TokenStore, directory: Directory,
                app: AppRegistration) -> APIRouter:
    """Routes for `{base}/{tenant}/v2.0/.well-known/openid-configuration`, the keys and the token endpoint."""
    router = APIRouter()
    known = {name.casefold() for name in tenant_names}

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> JSONResponse:
        if tenant.casefold() not in known:
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{str(request.base_url).rstrip('/')}/{tenant}"
        return JSONResponse({
            "issuer": issuer(request, directory.tenant_id),
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
        if tenant.casefold() not in known:
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        return JSONResponse({"keys": [directory.public_jwk]})

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        if tenant.casefold() not in known:
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") not in ("client_credentials", "password"):
            return aad_error(400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.")
        client_id = form.get("client_id", "")
        if not hmac.compare_digest(client_id.encode(), credentials.client_id.encode()):
            return aad_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.")
        if form["grant_type"] == "password":
            return _password_grant(form, credentials, directory, issuer(request, directory.tenant_id))
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
            "access_token": tokens.issue(Bearer(audience, app.client_id), directory.app_token(app, audience)),
        })

    return router


def _password_grant(form: dict[str, str], credentials: Credentials, directory: Directory, issuer: str) -> JSONResponse:
    """ROPC: a user's access token for an application ID URI (`api://...`); the app is a public
    client, so a client secret is optional but must be right when sent."""
    for required in ("username", "password", "scope"):
        if not form.get(required):
            return aad_error(400, "invalid_request", 900144,
                             f"The request body must contain the following parameter: '{required}'.")
    if "client_secret" in form and not hmac.compare_digest(
        form["client_secret"].encode(), credentials.client_secret.encode()
    ):
        return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    user = directory.find(form["username"])
    if user is None:
        return aad_error(400, "invalid_grant", 50034,
                         f"The user account {form['username']} does not exist in the {directory.tenant_id} directory. "
                         "To sign into this application, the account must be added to the directory.")
    if not hmac.compare_digest(form["password"].encode(), USER_PASSWORD.encode()):
        return aad_error(400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.")
    if not user.enabled:
        return aad_error(400, "invalid_grant", 50057, "The user account is disabled.")
    audience = _user_audience(form["scope"])
    if isinstance(audience, JSONResponse):
        return audience
    resource, scopes = audience
    return JSONResponse({
        "token_type": "Bearer",
        "scope": " ".join(scopes),
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": directory.access_token(user, issuer, resource, scopes, credentials.client_id),
    })


def _user_audience(scope: str) -> tuple[str, list[str]] | JSONResponse:
    """The one application ID URI a user token is requested for, and its scope names."""
    requested = [s for s in scope.split() if s not in OIDC_SCOPES]
    resources = {s.rsplit("/", 1)[0] for s in requested}
    if len(resources) != 1 or not next(iter(resources)).startswith("api://"):
        return aad_error(400, "invalid_resource", 500011,
                         "The emulator issues user tokens for one application ID URI (api://.../scope) only.")
    return resources.pop(), [s.rsplit("/", 1)[1] for s in requested]


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
