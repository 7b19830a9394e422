"""Who is calling the intake, and what they may do.

Credentials: a static bearer token (`intake.api_tokens`), an HMAC-SHA256 signature over the raw
body (`intake.hmac_secrets`), or an analyst's OpenID Connect access token (`workers/intake_oidc.py`).
Each becomes a `Caller` with the tenants it may post alerts for, read and approve in; the grants
come from `intake.sources` and `intake.analysts` (static credentials) or the token's claims.

Signed requests carry `X-Quell-Source` (the source's configured name), `X-Quell-Timestamp`
(unix seconds) and `X-Quell-Signature: sha256=<hex HMAC(secret, "<timestamp>.<body>")>`. A
timestamp may be `REPLAY_WINDOW_S` old and `CLOCK_SKEW_S` ahead. A signature is remembered, and
refused when presented again, once its delivery was accepted (the case durably started or
joined) and until its timestamp leaves the window: a delivery that failed (503: Temporal down)
is accepted when the sender retries it verbatim. Failures answer 401 without saying which part
was wrong, an unknown source name included. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import HTTPException, Request

from config.settings import IntakeSettings

UNAUTHORIZED = HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
REPLAY_WINDOW_S = 300
CLOCK_SKEW_S = 60
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also takes "¹", int() does not
_NO_SECRET = b"\0" * 32  # signs for unknown sources, so they cost what known ones cost


def _folded(tenants: list[str] | set[str]) -> frozenset[str]:
    return frozenset(t.casefold() for t in tenants)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its name (the approver, in the audit) and its tenants per right."""

    name: str
    alert_tenants: frozenset[str] = frozenset()
    read_tenants: frozenset[str] = frozenset()
    approve_tenants: frozenset[str] = frozenset()

    def may_post_alerts(self, tenant: str) -> bool:
        return tenant.casefold() in self.alert_tenants

    def may_read(self, tenant: str) -> bool:
        return tenant.casefold() in self.read_tenants

    def may_approve(self, tenant: str) -> bool:
        return tenant.casefold() in self.approve_tenants


def static_caller(name: str, intake: IntakeSettings) -> Caller:
    """The caller a static credential (token or HMAC source) of this name is."""
    source = intake.sources.get(name)
    analyst = intake.analysts.get(name)
    reads = _folded(analyst.tenants) if analyst else frozenset()
    return Caller(
        name=name,
        alert_tenants=_folded(source.tenants) if source else frozenset(),
        read_tenants=reads,
        approve_tenants=reads if analyst and analyst.approve else frozenset(),
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip()


def static_token_caller(presented: str, intake: IntakeSettings) -> Caller | None:
    match = None
    for name, token in intake.api_tokens.items():
        # Compare against every token so timing does not tell which one nearly matched.
        if hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            match = name
    return None if match is None else static_caller(match, intake)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return _sign(secret.encode(), timestamp, body)


def _sign(key: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class SignatureVerifier:
    """HMAC verification with a replay window and a memory of accepted deliveries.

    The memory is per process: run one intake replica per source, or put a shared store in
    front, if replays across replicas matter.
    """

    def __init__(self, intake: IntakeSettings, clock: Callable[[], float] = time.time) -> None:
        self._intake = intake
        self._clock = clock
        self._used: dict[str, float] = {}
        """Signatures of accepted deliveries, and when each one's timestamp leaves the window."""
        self._expiry: list[tuple[float, str]] = []
        self._in_flight: set[str] = set()

    @contextmanager
    def accepting(self, request: Request, body: bytes) -> Iterator[Caller | None]:
        """The signing source of a signed request (None when unsigned), refusing forged, stale
        and replayed ones. The signature is remembered only if the block completes: an error
        (an HTTPException included) leaves it usable for the sender's retry."""
        source = request.headers.get("x-quell-source")
        signature = request.headers.get("x-quell-signature", "")
        if source is None or not signature:
            yield None
            return
        expires = self._verify(source, signature, request.headers.get("x-quell-timestamp", ""), body)
        self._forget_expired()
        if signature in self._used or signature in self._in_flight:
            raise UNAUTHORIZED  # replayed, or the same delivery is being handled right now
        self._in_flight.add(signature)
        try:
            yield static_caller(source, self._intake)
        finally:
            self._in_flight.discard(signature)
        self._used[signature] = expires
        heapq.heappush(self._expiry, (expires, signature))

    def _verify(self, source: str, signature: str, stamp: str, body: bytes) -> float:
        """When the signature leaves the window; raises 401 unless it is valid now."""
        secret = self._intake.hmac_secrets.get(source)
        key = _NO_SECRET if secret is None else secret.get_secret_value().encode()
        if not _DIGITS.fullmatch(stamp):
            raise UNAUTHORIZED
        at = int(stamp)
        now = self._clock()
        expected = _sign(key, at, body)
        valid = hmac.compare_digest(expected.encode(), signature.encode())
        if secret is None or not valid or at < now - REPLAY_WINDOW_S or at > now + CLOCK_SKEW_S:
            raise UNAUTHORIZED
        return at + REPLAY_WINDOW_S

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] < now:
            _, signature = heapq.heappop(self._expiry)
            self._used.pop(signature, None)


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes; refuse larger bodies without holding them in memory."""
    declared = request.headers.get("content-length", "")
    if _DIGITS.fullmatch(declared) and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
