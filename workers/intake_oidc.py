"""Analysts' OpenID Connect access tokens (Microsoft Entra ID), verified with PyJWT.

The signature is checked with the issuer's keys (`PyJWKClient`: the JWKS is cached, and an
unknown key id refetches it at most once per cooldown), then the issuer, the audience, expiry
and not-before (60 s clock skew allowed). The caller is the token's `upn` (else
`preferred_username`), scoped to the tenant in its `tid` claim: the analyst role or group lets it
read that tenant's cases, the approver role or group also approve them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import jwt
import structlog

from config.settings import OidcSettings, secure_url
from workers.intake_auth import CLOCK_SKEW_S, Caller

log = structlog.get_logger("quell.intake")

ALGORITHMS = ["RS256"]
MAX_TOKEN_CHARS = 16_384
JWKS_LIFESPAN_S = 3600
HTTP_TIMEOUT_S = 10.0


class InvalidToken(Exception):
    """Not a token this intake accepts (the reason goes to the log, never to the caller)."""


class IdentityProviderUnavailable(Exception):
    """The issuer's discovery document or keys could not be read."""


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    async def caller(self, token: str) -> Caller:
        """The caller a valid access token names; InvalidToken or IdentityProviderUnavailable."""
        claims = await asyncio.to_thread(self._claims, token)
        return self._caller(claims)

    def _claims(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken("not a JWT")
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as unreachable:
            raise IdentityProviderUnavailable("the issuer's keys could not be fetched") from unreachable
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as invalid:
            raise InvalidToken(type(invalid).__name__) from None
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "iss", "aud", "tid"]},
            )
        except jwt.InvalidTokenError as invalid:
            raise InvalidToken(type(invalid).__name__) from None

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                url = self._settings.jwks_url or self._discover_jwks_url()
                self._keys = jwt.PyJWKClient(url, lifespan=JWKS_LIFESPAN_S, timeout=HTTP_TIMEOUT_S)
            return self._keys

    def _discover_jwks_url(self) -> str:
        issuer = self._settings.issuer
        try:
            response = httpx.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT_S)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as failed:
            raise IdentityProviderUnavailable("the issuer's discovery document could not be read") from failed
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise IdentityProviderUnavailable("the discovery document names another issuer")
        try:
            return secure_url(str(document.get("jwks_uri", "")))
        except ValueError:
            raise IdentityProviderUnavailable("the discovery document has no https jwks_uri") from None

    def _caller(self, claims: dict[str, Any]) -> Caller:
        name = claims.get("upn") or claims.get("preferred_username")
        tenant = claims["tid"]
        if not isinstance(name, str) or not name.strip() or not isinstance(tenant, str):
            raise InvalidToken("the token names no user (upn or preferred_username) or tenant")
        roles = _strings(claims.get("roles"))
        groups = _strings(claims.get("groups"))
        s = self._settings
        approver = (s.approver_role is not None and s.approver_role in roles) or (
            s.approver_group is not None and s.approver_group in groups
        )
        analyst = approver or (s.analyst_role is not None and s.analyst_role in roles) or (
            s.analyst_group is not None and s.analyst_group in groups
        )
        tenants = frozenset({tenant.casefold()})
        return Caller(
            name=name.strip(),
            read_tenants=tenants if analyst else frozenset(),
            approve_tenants=tenants if approver else frozenset(),
        )


def _strings(value: Any) -> set[str]:
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()
