"""The emulator's ASGI app: identity platform, Graph (/v1.0, /beta), Exchange admin REST, introspection.

Every Graph and Exchange call passes one gate (`microsoft_apis`): the bearer token must be for
that API's audience, the tenant's quota for the call's family may refuse it (429, Retry-After), a
scenario fault may answer instead of the handler (or let a write succeed without effect), and the
call is logged with its final status, its family and whether it was an early retry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulator import exo
from emulator.auth import (
    ANALYST_ROLE,
    ANALYSTS_GROUP,
    APPROVER_ROLE,
    APPROVERS_GROUP,
    EXCHANGE,
    GRAPH,
    Credentials,
    Directory,
    TokenStore,
    UserAccount,
    auth_router,
    issuer,
)
from emulator.errors import FAULT_MESSAGES, GRAPH_CODES, ExoError, GraphError, exo_error, graph_error
from emulator.faults import FaultInjector, api_matches
from emulator.graph import ROLE_TEMPLATES, graph_router
from emulator.graph_batch import batch_routes
from emulator.holds import Holds
from emulator.hunting import HuntingEngine
from emulator.principals import AppRegistration, principals_router
from emulator.quotas import HUNTING, Throttling, family_of, fingerprint
from emulator.scenario import Quotas, Scenario
from emulator.state import TenantState

EXO_PAGE_SIZE = 1000
"""Objects per InvokeCommand answer (Exchange's page)."""
BATCH_API = "graph:POST /$batch"
EXO_PATH = re.compile(r"^/adminapi/beta/([^/]+)/InvokeCommand$", re.IGNORECASE)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def create_app(scenario: Scenario, client_id: str = "quell-emulator", client_secret: str = "emulator-secret",
               exo_page_size: int = EXO_PAGE_SIZE, quotas: Quotas | None = None) -> FastAPI:
    """`exo_page_size`: objects an InvokeCommand answer holds before it pages (`@odata.nextLink`);
    `quotas`: this run's quotas instead of the scenario's."""
    state = TenantState(scenario, Throttling(quotas if quotas is not None else scenario.quotas))
    tokens = TokenStore()
    faults = FaultInjector(scenario.faults)
    holds = Holds()
    hunting = HuntingEngine(scenario.tables)
    message_trace = exo.trace_rows(scenario.tables.get("EmailEvents", []))
    tenant_names = {scenario.tenant.id.casefold(), *(d.casefold() for d in scenario.tenant.accepted_domains)}

    app = FastAPI(title=f"quell Microsoft 365 emulator ({scenario.id})", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tenant = state
    app.state.holds = holds
    directory = user_directory(scenario)
    registration = AppRegistration(client_id, withheld=frozenset(scenario.app.withhold))
    app.include_router(auth_router(tenant_names, Credentials(client_id, client_secret), tokens, directory, registration))
    graph = graph_router(state, hunting, client_id)
    app.include_router(graph, prefix="/v1.0")
    app.include_router(graph, prefix="/beta")
    batch_routes(app)
    principals = principals_router(registration, ROLE_TEMPLATES)
    app.include_router(principals, prefix="/v1.0")
    app.include_router(principals, prefix="/beta")

    @app.middleware("http")
    async def microsoft_apis(request: Request, call_next: Any) -> Response:
        path = request.url.path
        service = "graph" if path.startswith(("/v1.0/", "/beta/")) else "exo" if EXO_PATH.match(path) else None
        if service is None:
            return await call_next(request)
        body = await request.body()
        query = unquote(request.url.query)
        detail: dict[str, Any] = {"method": request.method, "path": path, "query": query}
        if service == "graph":
            api = f"graph:{request.method} /{path.split('/', 2)[2]}"
            if api_matches(HUNTING, api):
                detail["hunting_query"] = _hunting_query(body)
            if body:  # which request it was (an audit search, a batch): the same body, the same digest
                detail["body_sha256"] = hashlib.sha256(body).hexdigest()[:16]
        else:
            cmdlet, parameters = _cmdlet(body)
            api = f"exo:{cmdlet}"
            detail["parameters"] = parameters
        arrived = time.monotonic()
        family = family_of(api)
        bearer = tokens.bearer(request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        app_id = bearer.app if bearer else ""
        same_request = fingerprint(request.method, path, request.url.query, body)
        # A JSON batch's envelope is no call of a quota: Microsoft evaluates its requests one by
        # one, and each passes this gate on its own (emulator/graph_batch.py).
        metered = api != BATCH_API
        detail["family"] = family
        detail["early_retry"], detail["while_throttled"] = state.throttling.arrived(
            family, app_id, same_request, arrived) if metered else (False, False)
        wanted = GRAPH if service == "graph" else EXCHANGE
        if bearer is None or bearer.audience != wanted:
            response = _unauthorized(service, bearer.audience if bearer else None)
        elif metered and (retry_after := state.throttling.admit(family, app_id, arrived)) is not None:
            response = _fault_answer(service, 429, retry_after)
        else:
            fault = faults.check(api, body.decode("utf-8", "replace"), query)
            if fault is not None and fault.status is not None:
                response = _fault_answer(service, fault.status, fault.retry_after_s)
            else:
                request.state.discard_writes = fault is not None  # effect: ignore
                await holds.keep(api)
                response = await call_next(request)
                detail.update(getattr(request.state, "call_detail", {}))
        if metered:
            state.throttling.answered(family, app_id, same_request, time.monotonic(), response.status_code,
                                      response.headers.get("Retry-After"))
        state.record_call(api, response.status_code, detail)
        return response

    @app.post("/adminapi/beta/{tenant}/InvokeCommand")
    async def invoke_command(tenant: str, request: Request) -> JSONResponse:
        if tenant.casefold() not in tenant_names:
            return graph_error(404, "NotFound", f"Tenant '{tenant}' is not served here.")
        try:
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise ExoError("Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                               "The request body is not valid JSON.") from None
            tenant_data = state.writable(getattr(request.state, "discard_writes", False))
            client_ip = request.client.host if request.client else ""
            first = _skiptoken(request.query_params.get("$skiptoken", "0"))
            value, warnings = exo.invoke(state, tenant_data, body, client_id, client_ip, message_trace, first > 0)
        except ExoError as error:
            return exo_error(error)
        base = f"{str(request.base_url).rstrip('/')}/adminapi/beta/{tenant}"
        page = value[first:first + exo_page_size]
        if page and "ResultIndex" in page[0]:  # audit search pages: which records this answer held
            request.state.call_detail = {"result_index": [page[0]["ResultIndex"], page[-1]["ResultIndex"]]}
        answer = {
            "@odata.context": f"{base}/$metadata#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": warnings,
            "value": page,
        }
        if first + exo_page_size < len(value):  # the next page: the same body again, from here
            answer["@odata.nextLink"] = f"{base}/InvokeCommand?$skiptoken={first + exo_page_size}"
        return JSONResponse(answer)

    @app.get("/_emulator/state")
    async def emulator_state(request: Request) -> JSONResponse:
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "introspection answers loopback clients only"}, status_code=403)
        return JSONResponse({**state.snapshot(), "calls": state.calls, "audit_log": state.data.audit_log,
                             "throttling": state.throttling.summary()})

    @app.post("/_emulator/alerts")
    async def add_alerts(request: Request) -> JSONResponse:
        """More alerts in the tenant (alerts_v2 resources, defaults as for the scenario's alert): a
        storm's alerts, which quell then reads and writes back to like the scenario's own."""
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "introspection answers loopback clients only"}, status_code=403)
        try:
            alerts = json.loads(await request.body())
            ids = [state.add_alert(alert) for alert in alerts]
        except (ValueError, TypeError, KeyError, AttributeError):
            return JSONResponse({"error": "expected a list of alerts, each with an id"}, status_code=400)
        return JSONResponse({"added": len(ids)})

    @app.post("/_emulator/user-token")
    async def user_token(request: Request) -> JSONResponse:
        """A test's way to a user token Entra ID would not hand out on request (an expired one):
        `{"username", "audience", "expires_in"}`, signed and shaped like the ROPC grant's."""
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "introspection answers loopback clients only"}, status_code=403)
        try:
            asked = json.loads(await request.body())
            username, audience, expires_in = str(asked["username"]), str(asked["audience"]), int(asked["expires_in"])
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"error": "expected {username, audience, expires_in}"}, status_code=400)
        user = directory.find(username)
        if user is None:
            return JSONResponse({"error": "no such user"}, status_code=404)
        token = directory.access_token(user, issuer(request, directory.tenant_id), audience, [".default"],
                                       client_id, expires_in)
        return JSONResponse({"access_token": token})

    @app.get("/_emulator/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "scenario": scenario.id, "tenant": scenario.tenant.id})

    @app.exception_handler(GraphError)
    async def on_graph_error(request: Request, error: GraphError) -> JSONResponse:
        return graph_error(error.status, error.code, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if error.status_code == 404:
            message = f"Resource not found for the segment '{path.rstrip('/').rsplit('/', 1)[-1]}'."
        else:
            message = f"{request.method} is not supported on {path}."
        return graph_error(error.status_code, GRAPH_CODES.get(error.status_code, "BadRequest"), message)

    return app


def user_directory(scenario: Scenario) -> Directory:
    """Who signs in: the tenant's users (no app role), its read-only analysts and its approvers."""
    directory = Directory(scenario.tenant.id)
    for user in scenario.tenant.users:
        directory.add(UserAccount(user.userPrincipalName, user.id, user.displayName, user.accountEnabled))
    approvals = scenario.approvals
    for upn in approvals.analysts if approvals else []:
        directory.grant(upn, (ANALYST_ROLE,), (ANALYSTS_GROUP,))
    for upn in approvals.approvers if approvals else []:
        directory.grant(upn, (ANALYST_ROLE, APPROVER_ROLE), (APPROVERS_GROUP,))
    return directory


def _cmdlet(body: bytes) -> tuple[str, Any]:
    """The cmdlet name and parameters a request body names, for the call log and fault matching."""
    try:
        cmdlet_input = json.loads(body).get("CmdletInput", {})
        return str(cmdlet_input.get("CmdletName") or "?"), cmdlet_input.get("Parameters", {})
    except (ValueError, AttributeError):
        return "?", None


def _hunting_query(body: bytes) -> str | None:
    """The KQL of a runHuntingQuery request, for the call log (which reads repeat which)."""
    try:
        query = json.loads(body).get("Query")
    except (ValueError, AttributeError):
        return None
    return query if isinstance(query, str) else None


def _skiptoken(text: str) -> int:
    if not text.isdigit():
        raise ExoError("Microsoft.Exchange.Admin.OData.Core.ODataServiceException", "The $skiptoken is not valid.")
    return int(text)


def _unauthorized(service: str, audience: str | None) -> JSONResponse:
    reason = "Access token is missing or unknown." if audience is None else f"Invalid audience '{audience}'."
    headers = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
    if service == "graph":
        return graph_error(401, "InvalidAuthenticationToken", f"Access token validation failure. {reason}", headers)
    return JSONResponse({"error": {"code": "Unauthorized", "message": f"Authentication failed. {reason}"}},
                        status_code=401, headers=headers)


def _fault_answer(service: str, status: int, retry_after_s: float) -> JSONResponse:
    headers = {"Retry-After": f"{retry_after_s:g}"} if status in (429, 503) else None
    message = FAULT_MESSAGES.get(status, "An injected fault: the service could not complete the request.")
    if service == "graph":
        return graph_error(status, GRAPH_CODES.get(status, "UnknownError"), message, headers)
    exception = "Microsoft.Exchange.Net.Throttling.ThrottlingException" if status == 429 else "System.Exception"
    return exo_error(ExoError(exception, message, status), headers)
