"""Who is calling the intake: a bearer token, or an HMAC-SHA256 signature over the raw body.

Signed requests carry `X-Quell-Source` (the source's configured name), `X-Quell-Timestamp`
(unix seconds) and `X-Quell-Signature: sha256=<hex HMAC(secret, "<timestamp>.<body>")>`. A
signature is accepted once, inside the replay window. Failures answer 401 without saying which
part was wrong. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

from fastapi import HTTPException, Request
from pydantic import SecretStr

UNAUTHORIZED = HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


def bearer_caller(request: Request, tokens: dict[str, SecretStr]) -> str | None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    match = None
    for name, token in tokens.items():
        # Compare against every token so timing does not tell which one nearly matched.
        if hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            match = name
    return match


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class SignatureVerifier:
    """HMAC verification with a replay window and a memory of signatures already used.

    The memory is per process: run one intake replica per source, or put a shared store in
    front, if replays across replicas matter.
    """

    def __init__(self, secrets: dict[str, SecretStr], window_s: int = 300, clock=time.time) -> None:
        self._secrets = secrets
        self._window = window_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, request: Request, body: bytes) -> str | None:
        source = request.headers.get("x-quell-source")
        signature = request.headers.get("x-quell-signature", "")
        stamp = request.headers.get("x-quell-timestamp", "")
        if source is None or not signature:
            return None
        secret = self._secrets.get(source)
        if secret is None or not stamp.isdigit():
            raise UNAUTHORIZED
        now = self._clock()
        if abs(now - int(stamp)) > self._window:
            raise UNAUTHORIZED
        expected = sign(secret.get_secret_value(), int(stamp), body)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise UNAUTHORIZED
        self._forget_before(now - self._window)
        if signature in self._seen:
            raise UNAUTHORIZED  # replayed
        self._seen[signature] = now
        return source

    def _forget_before(self, cutoff: float) -> None:
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes; refuse larger bodies without holding them in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
