"""Intake service: alert webhook, case status, and the approvals API.

Every route but `/healthz` needs `Authorization: Bearer <token>` (tokens from settings
`intake.api_tokens`, by caller name); alert sources may sign instead (`intake.hmac_secrets`,
see `workers/intake_auth.py`). The caller's name is
the approver of a decision sent here, so nobody approves in someone else's name; the API signs
the decision with its own key (`intake.signing_key`) in that name. Errors say
what is wrong without echoing the payload. 202 means Temporal acknowledged the case start or
signal; if Temporal is unreachable the answer is 503 so the sender retries. Every alert takes
`cases.accept_alert`, the path the poller uses too (correlation: docs/intake.md).
"""


import json
import re
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, RPCError, WorkflowQueryFailedError
from temporalio.service import RPCStatusCode

from activities import cases
from activities.alert_parsing import GenericAlert, PayloadError, parse_alerts
from config.settings import Settings
from workers.intake_auth import UNAUTHORIZED, SignatureVerifier, bearer_caller, read_body
from workflows.signatures import load_private_key
from workflows.poller import OpenedCase
from workflows.types import CaseReport, CaseSummary, DecisionReceipt

log = structlog.get_logger("quell.intake")

MAX_DEPTH = 32
CASE_ID = re.compile(r"connector-case/[^/\s]{1,200}/[^\s]{1,700}")


class Accepted(BaseModel):
    accepted: list[OpenedCase]
    """What intake did with each alert of the delivery (the poller reports the same)."""


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action_id: str = Field(min_length=1, max_length=16)
    plan_hash: str = Field(min_length=1, max_length=64)
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


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def create_app(settings: Settings, connect: Callable[[], Any]) -> FastAPI:
    """`connect` is an async callable returning a Temporal client (made once, in the lifespan)."""

    app = FastAPI(title="quell intake", version="1")
    app.state.client = None

    async def temporal(request: Request) -> Client:
        # Connect lazily so the service starts (and answers 503) while Temporal is down.
        if request.app.state.client is None:
            try:
                request.app.state.client = await connect()
            except Exception:
                log.warning("temporal unreachable")
                raise HTTPException(503, "case service unavailable, retry later") from None
        return request.app.state.client

    signatures = SignatureVerifier(settings.intake.hmac_secrets)

    def caller(request: Request) -> str:
        name = bearer_caller(request, settings.intake.api_tokens)
        if name is None:
            raise UNAUTHORIZED
        return name

    Caller = Annotated[str, Depends(caller)]
    Temporal = Annotated[Client, Depends(temporal)]

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
        raw = await read_body(request, settings.intake.max_body_bytes)
        who = signatures.verify(request, raw) or bearer_caller(request, settings.intake.api_tokens)
        if who is None:
            raise UNAUTHORIZED
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "body is not valid JSON") from None
        except RecursionError:
            raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
        if _depth(body) > MAX_DEPTH:
            raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            alerts = parse_alerts(body, tenant)
        except PayloadError as bad:
            raise HTTPException(422, str(bad)) from None
        configured = {t.tenant_id for t in settings.tenants}
        for alert in alerts:
            if tenant is not None and alert.tenant_id != tenant:
                raise HTTPException(422, "the alert names another tenant than the 'tenant' parameter")
            if alert.tenant_id not in configured:
                raise HTTPException(422, f"tenant {alert.tenant_id} is not configured")
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
            log.info("alert accepted", case=opened.case_id, alert=alert.alert_id, source=who,
                     duplicate=opened.duplicate)
            accepted.append(opened)
        return Accepted(accepted=accepted)

    async def _known(client: Client, case: str, read: Callable[..., Any]) -> Any:
        if not CASE_ID.fullmatch(case):
            raise HTTPException(404, "no such case")
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
    async def get_report(case_id: str, who: Caller, client: Temporal) -> Any:
        return await _known(client, case_id, cases.report)

    signing_key = (
        load_private_key(settings.intake.signing_key.get_secret_value().encode())
        if settings.intake.signing_key is not None else None
    )

    @app.post("/v1/cases/{case_id:path}/approvals", response_model=DecisionReceipt)
    async def post_approval(case_id: str, body: ApprovalRequest, who: Caller, client: Temporal) -> Any:
        # Signed with the API's key in the name of the caller it authenticated (unsigned without a
        # key, which the workflow refuses unless approval.allow_unsigned is on).
        decision = cases.new_decision(case_id, approver=who, key=signing_key, **body.model_dump())
        try:
            return await _known(client, case_id, lambda c, k: cases.decide(c, k, decision))
        except cases.DecisionRefused as refused:
            return JSONResponse(status_code=409, content={"detail": str(refused)})

    @app.get("/v1/cases/{case_id:path}", response_model=CaseSummary)
    async def get_case(case_id: str, who: Caller, client: Temporal) -> Any:
        return await _known(client, case_id, cases.status)

    return app
