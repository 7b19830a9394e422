"""`POST /codec/encode` and `POST /codec/decode`: Temporal's codec-server protocol, served by the intake.

The Temporal UI (`--ui-codec-endpoint`, or its codec settings) and CLI (`--codec-endpoint
.../codec --codec-auth "Bearer <token>"`) send `{"payloads": [{"metadata": {...}, "data": ...}]}`
(protobuf JSON: bytes as base64) and show what comes back. Both routes take the intake's caller
authentication: decoding shows case data, so it needs the same token as reading a case report.
Browsers may call from the configured origins only (CORS); a preflight carries no credentials,
so it is answered without them.
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from workers.codec import EncryptionCodec, PayloadDecryptionError
from workers.intake_auth import read_body

log = structlog.get_logger("quell.intake")

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A batch of payloads as the UI sends them; Temporal's own limit is 2 MB a payload (base64 adds a third)."""
ALLOWED_HEADERS = "authorization, content-type, x-namespace"

CODEC_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["payloads"],
                "properties": {
                    "payloads": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "metadata": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                                "data": {"type": "string", "format": "byte"},
                            },
                        },
                    }
                },
            }
        }
    },
}


def codec_routes(codec: EncryptionCodec, caller: Callable[..., str], origins: Sequence[str]) -> APIRouter:
    """The codec routes; `caller` is the intake's authentication dependency (401 without a caller)."""
    router = APIRouter(prefix="/codec")
    Caller = Annotated[str, Depends(caller)]

    def cors(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or origin not in origins:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

    async def apply(
        request: Request, who: str, operation: str, transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
    ) -> Response:
        raw = await read_body(request, MAX_BODY_BYTES)
        try:
            payloads = json_format.Parse(raw, Payloads())
        except (json_format.ParseError, ValueError, RecursionError):
            raise HTTPException(400, 'body is not a codec request: {"payloads": [{"metadata": {...}, "data": "..."}]}') from None
        try:
            transformed = await transform(payloads.payloads)
        except PayloadDecryptionError as refused:
            raise HTTPException(400, str(refused)) from None
        log.info("codec request", operation=operation, caller=who, payloads=len(transformed))
        body = json_format.MessageToJson(Payloads(payloads=transformed))
        return Response(body, media_type="application/json", headers=cors(request))

    @router.options("/{operation}", include_in_schema=False)
    async def preflight(operation: Literal["encode", "decode"], request: Request) -> Response:
        headers = cors(request)
        if headers:
            headers |= {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                        "Access-Control-Max-Age": "600"}
        return Response(status_code=204, headers=headers)

    @router.post("/encode", openapi_extra={"requestBody": CODEC_BODY})
    async def encode(request: Request, who: Caller) -> Response:
        return await apply(request, who, "encode", codec.encode)

    @router.post("/decode", openapi_extra={"requestBody": CODEC_BODY})
    async def decode(request: Request, who: Caller) -> Response:
        return await apply(request, who, "decode", codec.decode)

    return router
