"""Intake service: alert webhook, case status, and the approvals API.

Every route but `/healthz` needs `Authorization: Bearer <token>`: a static token
(`intake.api_tokens`, by caller name) or an analyst's Entra ID access token (`intake.oidc`);
alert sources may sign instead (`intake.hmac_secrets`). What a caller may do, and for which
tenants, is its grant (`workers/intake_auth.py`, docs/intake.md): sources post alerts for their
tenants, analysts read their tenants' cases, approvers approve there. The caller's name is the
approver of a decision sent here, so nobody approves in someone else's name; the API signs the
decision with its own key (`intake.signing_key`) in that name. Errors say what is
wrong without echoing the payload. 202 means Temporal acknowledged the case start or signal; if
Temporal is unreachable the answer is 503 so the sender retries. Every alert takes
`cases.accept_alert`, the path the poller uses too (correlation: docs/intake.md). With payload
encryption on, `/codec/encode` and `/codec/decode` serve the Temporal UI and CLI (workers/codec_server.py).
"""


import json
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client, RPCError, WorkflowQueryFailedError
from temporalio.common import MetricMeter
from temporalio.service import RPCStatusCode

from activities import cases
from activities.alert_parsing import GenericAlert, PayloadError, public_errors, parse_alerts
from config.settings import Settings
from workers.codec import encryption_codec
from workers.codec_server import codec_routes
from workers.intake_auth import (
    UNAUTHORIZED,
    Caller,
    SignatureVerifier,
    bearer_token,
    read_body,
    static_token_caller,
)
from workers.intake_oidc import IdentityProviderUnavailable, InvalidToken, OidcVerifier
from workers.metrics import IntakeMetrics
from workflows.signatures import load_private_key
from workflows.types import AlertRef, CaseReport, CaseSummary, DecisionReceipt, OpenedCase

log = structlog.get_logger("quell.intake")

MAX_DEPTH = 32
CASE_ID = re.compile(r"connector-case/(?P<tenant>[^/\s]{1,200})/[^\s]{1,700}")
FORBIDDEN = HTTPException(403, "not permitted for this caller")


class Accepted(BaseModel):
    accepted: list[OpenedCase]
    """What intake did with each alert of the delivery (the poller reports the same)."""


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action_id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.-]+$")
    plan_hash: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    approve: bool = True
    reason: str = Field(default="", max_length=2000)


ALERT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    GenericAlert.model_json_schema(),
                    {
                        "type": "object",
                        "description": "A Microsoft Graph security alert (alerts_v2), a Sentinel incident "
                        "trigger ({object: incident}) or Defender streaming records ({records: [...]})",
                    },
                ]
            }
        }
    },
}


class CountRefusedAlerts:
    """Counts the alert deliveries answered 4xx/5xx, by status. Plain ASGI: Starlette's
    `BaseHTTPMiddleware` runs every request in a task group of its own, which cost the intake
    more CPU than the rest of the request (bench/intake.py, docs/storms.md)."""

    def __init__(self, app: ASGIApp, counted: IntakeMetrics) -> None:
        self._app = app
        self._counted = counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/alerts":
            await self._app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self._counted.refused(message["status"])
            await send(message)

        await self._app(scope, receive, counting_send)


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def create_app(settings: Settings, connect: Callable[[], Any], clock: Callable[[], float] = time.time,
               meter: MetricMeter = MetricMeter.noop) -> FastAPI:
    """`connect` is an async callable returning a Temporal client (made once, on first use);
    `clock` is the signature replay window's; `meter` counts alerts taken and refused."""

    intake = settings.intake
    hidden = {} if intake.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="quell intake", version="1", **hidden)
    app.state.client = None
    counted = IntakeMetrics(meter)

    app.add_middleware(CountRefusedAlerts, counted=counted)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 without `input` and `ctx` (they echo the payload) or unexpected key names."""
        return JSONResponse(status_code=422, content={"detail": public_errors(error.errors())})

    async def temporal(request: Request) -> Client:
        # Connect lazily so the service starts (and answers 503) while Temporal is down.
        if request.app.state.client is None:
            try:
                request.app.state.client = await connect()
            except Exception:
                log.warning("temporal unreachable")
                raise HTTPException(503, "case service unavailable, retry later") from None
        return request.app.state.client

    signatures = SignatureVerifier(intake, clock)
    oidc = OidcVerifier(intake.oidc) if intake.oidc else None

    async def authenticated(request: Request) -> Caller:
        token = bearer_token(request)
        if token is None:
            raise UNAUTHORIZED
        found = static_token_caller(token, intake)
        if found is not None:
            return found
        if oidc is None:
            raise UNAUTHORIZED
        try:
            return await oidc.caller(token)
        except InvalidToken as invalid:
            log.info("bearer token refused", reason=str(invalid))
            raise UNAUTHORIZED from None
        except IdentityProviderUnavailable as unavailable:
            log.warning("identity provider unavailable", reason=str(unavailable))
            raise HTTPException(503, "identity provider unavailable, retry later") from None

    def authorize(case: str, allowed: Callable[[str], bool]) -> None:
        """Refuse a case id that is no case's, and a caller without the right in its tenant."""
        match = CASE_ID.fullmatch(case)
        if match is None:
            raise HTTPException(404, "no such case")
        if not allowed(match["tenant"]):
            raise FORBIDDEN

    Authenticated = Annotated[Caller, Depends(authenticated)]

    async def analyst(request: Request) -> str:
        """Decoded payloads are case data: only callers who may read some tenant's cases get them."""
        who = await authenticated(request)
        if not who.read_tenants:
            raise FORBIDDEN
        return who.name

    codec = encryption_codec(settings.codec)
    if codec is not None:
        app.include_router(codec_routes(codec, analyst, settings.intake.codec_cors_origins))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/alerts", status_code=202, response_model=Accepted, openapi_extra={"requestBody": ALERT_BODY})
    async def post_alert(
        request: Request,
        tenant: Annotated[
            str | None, Query(max_length=200, description="tenant id, for payloads that do not name it")
        ] = None,
    ) -> Any:
        raw = await read_body(request, intake.max_body_bytes)
        # A signature is remembered only when this block returns: a 4xx or 503 leaves the sender's
        # verbatim retry acceptable.
        with signatures.accepting(request, raw) as signer:
            who = signer or await authenticated(request)
            alerts = _alerts(raw, tenant)
            configured = {t.tenant_id for t in settings.tenants}
            for alert in alerts:
                if tenant is not None and alert.tenant_id != tenant:
                    raise HTTPException(422, "the alert names another tenant than the 'tenant' parameter")
                if alert.tenant_id not in configured:
                    raise HTTPException(422, "the alert's tenant is not configured")
                if not who.may_post_alerts(alert.tenant_id):
                    raise FORBIDDEN
            client = await temporal(request)
            accepted = []
            for alert in alerts:
                try:
                    opened = await cases.accept_alert(client, settings, alert, settings.temporal.task_queue)
                except RPCError as failure:
                    # Cases opened before this failure are safe to open again: the sender's retry
                    # joins them (signal-with-start on the same id).
                    log.warning("case start failed", status=failure.status.name)
                    raise HTTPException(503, "case service unavailable, retry later") from None
                log.info("alert accepted", case=opened.case_id, alert=alert.alert_id, source=who.name,
                         duplicate=opened.duplicate)
                counted.received(opened)
                accepted.append(opened)
            return Accepted(accepted=accepted)

    async def _known(request: Request, case: str, read: Callable[..., Any]) -> Any:
        client = await temporal(request)
        try:
            return await read(client, case)
        except WorkflowQueryFailedError:
            # Temporal answers INVALID_ARGUMENT for ids it cannot hold: no such case either.
            raise HTTPException(404, "no such case") from None
        except RPCError as failure:
            if failure.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                raise HTTPException(404, "no such case") from None
            log.warning("case read failed", status=failure.status.name, message=failure.message[:200])
            raise HTTPException(503, "case service unavailable, retry later") from None

    @app.get("/v1/cases/{case_id:path}/report", response_model=CaseReport)
    async def get_report(case_id: str, request: Request, who: Authenticated) -> Any:
        authorize(case_id, who.may_read)
        return await _known(request, case_id, cases.report)

    signing_key = (
        load_private_key(settings.intake.signing_key.get_secret_value().encode())
        if settings.intake.signing_key is not None else None
    )

    @app.post("/v1/cases/{case_id:path}/approvals", response_model=DecisionReceipt)
    async def post_approval(case_id: str, body: ApprovalRequest, request: Request, who: Authenticated) -> Any:
        authorize(case_id, who.may_approve)
        # Signed with the API's key in the name of the caller it authenticated (unsigned without a
        # key, which the workflow refuses unless approval.allow_unsigned is on).
        decision = cases.new_decision(case_id, approver=who.name, key=signing_key, **body.model_dump())
        try:
            return await _known(request, case_id, lambda c, k: cases.decide(c, k, decision))
        except cases.DecisionRefused as refused:
            return JSONResponse(status_code=409, content={"detail": str(refused)})

    @app.get("/v1/cases/{case_id:path}", response_model=CaseSummary)
    async def get_case(case_id: str, request: Request, who: Authenticated) -> Any:
        authorize(case_id, who.may_read)
        return await _known(request, case_id, cases.status)

    return app


def _alerts(raw: bytes, tenant: str | None) -> list[AlertRef]:
    """The alerts a delivery's body carries, or the 400/422 that says what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "body is not valid JSON") from None
    except RecursionError:
        raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _depth(body) > MAX_DEPTH:
        raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return parse_alerts(body, tenant)
    except PayloadError as bad:
        raise HTTPException(422, str(bad)) from None
