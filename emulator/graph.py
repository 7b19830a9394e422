"""Microsoft Graph, the part quell uses, served under /v1.0 and /beta.

Alerts (alerts_v2, comments), advanced hunting, users (password reset, sign-in revocation),
directory role assignments and definitions, conditional access policies, and audit log queries.
Handlers raise `GraphError`; the app answers it in Graph's error shape.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emulator.errors import GraphError
from emulator.hunting import HuntingEngine, HuntingQueryError
from emulator.scenario import audit_cloud_app_event
from emulator.state import TenantData, TenantState, utcnow
from emulator.timestamps import format_datetime
from workflows.timestamps import parse_iso

ROLE_TEMPLATES = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Authentication Administrator": "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    "Conditional Access Administrator": "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
    "Application Administrator": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "Cloud Application Administrator": "158c047a-c907-4556-b7ef-446551a6b5f7",
    "SharePoint Administrator": "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "Teams Administrator": "69091246-20e8-4a56-aa4d-066075b2a7a8",
    "Compliance Administrator": "17315797-102d-40b4-93e0-432062caca18",
    "Hybrid Identity Administrator": "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2",
    "Security Operator": "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f",
    "Security Reader": "5d6b6bb7-de71-4623-b4af-96380a352509",
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "Directory Readers": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
}
_CUSTOM_ROLES = uuid.UUID("0c8a9d3e-6f7b-4a21-8e55-2b9c41d7f360")
ALERT_VALUES = {
    "status": {"unknown", "new", "inProgress", "resolved", "unknownFutureValue"},
    "classification": {"unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"},
    "determination": {
        "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
        "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious",
        # The service metadata (and the SDKs generated from it) name it confirmedActivity.
        "notEnoughDataToValidate", "confirmedActivity", "lineOfBusinessApplication", "unknownFutureValue",
    },
}
USER_DEFAULT_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName", "id",
)
USER_PROPERTIES = set(USER_DEFAULT_SELECT) | {
    "accountEnabled", "signInSessionsValidFromDateTime", "lastPasswordChangeDateTime", "passwordProfile",
    "createdDateTime", "userType", "onPremisesSyncEnabled", "usageLocation", "department", "companyName",
    "otherMails", "proxyAddresses", "passwordPolicies", "employeeId", "country", "city",
}
USER_WRITABLE = {
    "accountEnabled": bool, "passwordProfile": dict, "displayName": str, "jobTitle": str, "department": str,
    "usageLocation": str, "givenName": str, "surname": str, "mobilePhone": str, "officeLocation": str,
    "passwordPolicies": str,
}
CA_STATES = {"enabled", "disabled", "enabledForReportingButNotEnforced"}
# Audit log queries: the baseline tenant allocation Microsoft documents ("Microsoft Graph service-specific
# throttling limits", security audit log query service limits); a real tenant may be allowed more.
AUDIT_QUERIES_PER_DAY = 200
AUDIT_QUERIES_UNFINISHED = 50
AUDIT_RECORDS_PER_QUERY = 1_000_000
AUDIT_SERVICES = {"AzureActiveDirectory": ("AzureActiveDirectory", "azureActiveDirectoryAuditRecord")}
"""Record type -> (auditLogRecord service, auditData type); everything else is an Exchange admin record."""
ALERTS_PAGE_MAX = 2000
"""Graph's largest alerts_v2 page (`$top`), and its page size without one."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ODATA_SAFE = "':"  # left as they are in query values; spaces as %20, as Graph writes its links
_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+(.+?)\s*$")


def graph_router(state: TenantState, hunting: HuntingEngine, app_name: str) -> APIRouter:
    router = APIRouter()
    audit_in_hunting = len(state.data.audit_log)  # records already in CloudAppEvents
    audit_submissions: list[datetime] = []  # when each audit log query was created

    def data(request: Request) -> TenantData:
        return state.writable(getattr(request.state, "discard_writes", False))

    # ----------------------------------------------------------------------- alerts

    @router.get("/security/alerts_v2")
    async def list_alerts(request: Request) -> JSONResponse:
        """Pages of `$top` (at most ALERTS_PAGE_MAX), ordered by createdDateTime (`$orderby`, newest
        first by default); `@odata.nextLink` carries a `$skiptoken` that names the last alert served
        (keyset paging: alerts created meanwhile neither shift nor repeat a page)."""
        query = request.query_params
        clauses = _parse_filter(query.get("$filter", ""), {
            "createdDateTime", "lastUpdateDateTime", "serviceSource", "detectionSource", "status", "severity",
            "classification", "title",
        })
        descending = _alerts_descending(query.get("$orderby", "createdDateTime desc"))
        size = min(_top(query["$top"]), ALERTS_PAGE_MAX) if "$top" in query else ALERTS_PAGE_MAX
        alerts = sorted(
            (a for a in state.data.alerts.values() if all(_holds(a, c) for c in clauses)),
            key=_alert_key, reverse=descending,
        )
        if "$skiptoken" in query:
            last = _read_skiptoken(query["$skiptoken"])
            alerts = [a for a in alerts if (_alert_key(a) < last if descending else _alert_key(a) > last)]
        body: dict[str, Any] = {"@odata.context": _context(request, "security/alerts_v2"), "value": alerts[:size]}
        if len(alerts) > size:
            following = {k: v for k, v in query.items() if k != "$skiptoken"}
            following["$skiptoken"] = _skiptoken(_alert_key(alerts[size - 1]))
            encoded = "&".join(f"{k}={quote(v, safe=_ODATA_SAFE)}" for k, v in following.items())
            body["@odata.nextLink"] = f"{str(request.url).split('?', 1)[0]}?{encoded}"
        return JSONResponse(body)

    def find_alert(alert_id: str) -> dict[str, Any]:
        alert = state.data.alerts.get(alert_id)
        if alert is None:
            raise GraphError(404, f"Alert '{alert_id}' was not found.", "NotFound")
        return alert

    @router.get("/security/alerts_v2/{alert_id}")
    async def get_alert(alert_id: str, request: Request) -> JSONResponse:
        return JSONResponse({"@odata.context": _context(request, "security/alerts_v2/$entity"), **find_alert(alert_id)})

    @router.patch("/security/alerts_v2/{alert_id}")
    async def update_alert(alert_id: str, request: Request) -> JSONResponse:
        find_alert(alert_id)
        body = await _json_object(request)
        changes = {k: v for k, v in body.items() if not k.startswith("@odata")}
        for key, value in changes.items():
            if key in ALERT_VALUES:
                if value not in ALERT_VALUES[key]:
                    raise GraphError(400, f"Invalid value '{value}' for property '{key}'.")
            elif key == "assignedTo":
                if value is not None and not isinstance(value, str):
                    raise GraphError(400, "Invalid value for property 'assignedTo'.")
            else:
                raise GraphError(400, f"Property '{key}' cannot be updated on an alert.")
        alert = data(request).alerts[alert_id]
        alert.update(changes)
        alert["lastUpdateDateTime"] = format_datetime(utcnow())
        if changes.get("status") == "resolved":
            alert["resolvedDateTime"] = alert["lastUpdateDateTime"]
        return JSONResponse({"@odata.context": _context(request, "security/alerts_v2/$entity"), **alert})

    @router.post("/security/alerts_v2/{alert_id}/comments")
    async def comment_alert(alert_id: str, request: Request) -> JSONResponse:
        find_alert(alert_id)
        body = await _json_object(request)
        text = body.get("comment")
        if not isinstance(text, str) or not text.strip():
            raise GraphError(400, "The alert comment must have a non-empty 'comment'.")
        alert = data(request).alerts[alert_id]
        now = format_datetime(utcnow())
        alert["comments"] = [*alert.get("comments", []),
                             {"comment": text, "createdByDisplayName": app_name, "createdDateTime": now}]
        alert["lastUpdateDateTime"] = now
        return JSONResponse({
            "@odata.context": _context(request, "Collection(microsoft.graph.security.alertComment)"),
            "value": alert["comments"],
        })

    # ----------------------------------------------------------------------- hunting

    @router.post("/security/runHuntingQuery")
    async def run_hunting_query(request: Request) -> JSONResponse:
        body = await _json_object(request)
        query = body.get("Query", body.get("query"))
        timespan = body.get("Timespan", body.get("timespan"))
        if not isinstance(query, str) or not query.strip():
            raise GraphError(400, "The request body must contain a non-empty 'Query'.")
        if timespan is not None and not isinstance(timespan, str):
            raise GraphError(400, "'Timespan' must be an ISO 8601 duration or interval string.")
        nonlocal audit_in_hunting
        new_audit = state.data.audit_log[audit_in_hunting:]
        hunting.add_rows("CloudAppEvents", [audit_cloud_app_event(r, state.data.users) for r in new_audit])
        audit_in_hunting += len(new_audit)
        try:
            # Off the event loop: other requests go on while DuckDB plans and runs the query.
            result = await asyncio.to_thread(hunting.run, query, utcnow(), timespan)
        except HuntingQueryError as error:
            raise GraphError(400, str(error)) from None
        return JSONResponse({"@odata.context": _context(request, "microsoft.graph.security.huntingQueryResults"), **result})

    # ----------------------------------------------------------------------- users

    def find_user(tenant: TenantData, key: str) -> dict[str, Any]:
        user = tenant.find_user(key)
        if user is None:
            raise GraphError(404, f"Resource '{key}' does not exist or one of its queried reference-property "
                                  "objects are not present.", "Request_ResourceNotFound")
        return user

    @router.get("/users/{user_key}")
    async def get_user(user_key: str, request: Request) -> JSONResponse:
        user = find_user(state.data, user_key)
        select = request.query_params.get("$select")
        wanted = [p.strip() for p in select.split(",") if p.strip()] if select else list(USER_DEFAULT_SELECT)
        for name in wanted:
            if name not in USER_PROPERTIES and (name == "roles" or name not in user):
                raise GraphError(400, f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
                                 "Request_BadRequest")
        body: dict[str, Any] = {"@odata.context": _context(request, "users/$entity")}
        for name in wanted:
            value = user.get(name, [] if name == "businessPhones" else None)
            if name == "passwordProfile" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k != "password"} | {"password": None}
            body[name] = value
        return JSONResponse(body)

    @router.patch("/users/{user_key}")
    async def update_user(user_key: str, request: Request) -> Response:
        tenant = data(request)
        user = find_user(tenant, user_key)
        # OData annotations (the SDK sends "@odata.type") are metadata, not properties.
        body = {k: v for k, v in (await _json_object(request)).items() if not k.startswith("@odata.")}
        for key, value in body.items():
            kind = USER_WRITABLE.get(key)
            if kind is None:
                raise GraphError(400, f"Property '{key}' does not exist as a declared property or extension property.",
                                 "Request_BadRequest")
            if not isinstance(value, kind):
                raise GraphError(400, f"Invalid value specified for property '{key}' of resource 'User'.",
                                 "Request_BadRequest")
        profile = body.pop("passwordProfile", None)
        if profile is not None:
            _reset_password(tenant, user, profile)
        user.update(body)
        return Response(status_code=204)

    @router.post("/users/{user_key}/revokeSignInSessions")
    async def revoke_sessions(user_key: str, request: Request) -> JSONResponse:
        user = find_user(data(request), user_key)
        user["signInSessionsValidFromDateTime"] = format_datetime(utcnow().replace(microsecond=0))
        return JSONResponse({"@odata.context": _context(request, "Edm.Boolean"), "value": True})

    # ----------------------------------------------------------------------- directory roles

    def definitions() -> dict[str, dict[str, Any]]:
        names = list(ROLE_TEMPLATES) + sorted({r for u in state.data.users for r in u.get("roles", [])} - set(ROLE_TEMPLATES))
        return {name: _role_definition(name) for name in names}

    @router.get("/roleManagement/directory/roleDefinitions")
    async def role_definitions(request: Request) -> JSONResponse:
        clauses = _parse_filter(request.query_params.get("$filter", ""), {"displayName", "templateId", "id", "isBuiltIn"})
        found = [d for d in definitions().values() if all(_holds(d, c) for c in clauses)]
        return JSONResponse({"@odata.context": _context(request, "roleManagement/directory/roleDefinitions"), "value": found})

    @router.get("/roleManagement/directory/roleAssignments")
    async def role_assignments(request: Request) -> JSONResponse:
        query = request.query_params
        clauses = _parse_filter(query.get("$filter", ""), {"principalId", "roleDefinitionId", "directoryScopeId"})
        expand = {e.strip() for e in query.get("$expand", "").split(",") if e.strip()}
        if expand - {"roleDefinition", "principal"}:
            raise GraphError(400, f"Could not find a navigation property named '{', '.join(sorted(expand))}'.")
        roles = definitions()
        found = []
        for user in state.data.users:
            for name in user.get("roles", []):
                definition = roles[name]
                assignment: dict[str, Any] = {
                    "id": _assignment_id(user, definition),
                    "principalId": user["id"],
                    "roleDefinitionId": definition["id"],
                    "directoryScopeId": "/",
                }
                if not all(_holds(assignment, c) for c in clauses):
                    continue
                if "roleDefinition" in expand:
                    assignment["roleDefinition"] = definition
                if "principal" in expand:
                    assignment["principal"] = {"@odata.type": "#microsoft.graph.user", "id": user["id"],
                                               "displayName": user.get("displayName"),
                                               "userPrincipalName": user["userPrincipalName"]}
                found.append(assignment)
        return JSONResponse({"@odata.context": _context(request, "roleManagement/directory/roleAssignments"), "value": found})

    @router.delete("/roleManagement/directory/roleAssignments/{assignment_id}")
    async def delete_role_assignment(assignment_id: str, request: Request) -> Response:
        roles = definitions()
        for user in data(request).users:
            held = user.get("roles", [])
            name = next((n for n in held if _assignment_id(user, roles[n]) == assignment_id), None)
            if name is not None:
                user["roles"] = [n for n in held if n != name]
                return Response(status_code=204)
        raise GraphError(404, f"Resource '{assignment_id}' does not exist or one of its queried reference-property "
                              "objects are not present.", "Request_ResourceNotFound")

    # ----------------------------------------------------------------------- conditional access

    @router.get("/identity/conditionalAccess/policies")
    async def list_policies(request: Request) -> JSONResponse:
        return JSONResponse({"@odata.context": _context(request, "identity/conditionalAccess/policies"),
                             "value": state.data.conditional_access_policies})

    @router.get("/identity/conditionalAccess/policies/{policy_id}")
    async def get_policy(policy_id: str, request: Request) -> JSONResponse:
        policy = next((p for p in state.data.conditional_access_policies if p.get("id") == policy_id), None)
        if policy is None:
            raise GraphError(404, f"Policy '{policy_id}' was not found.", "ResourceNotFound")
        return JSONResponse({"@odata.context": _context(request, "identity/conditionalAccess/policies/$entity"), **policy})

    @router.post("/identity/conditionalAccess/policies")
    async def create_policy(request: Request) -> JSONResponse:
        body = await _json_object(request)
        if not isinstance(body.get("displayName"), str) or not body["displayName"]:
            raise GraphError(400, "displayName is required.")
        if body.get("state") not in CA_STATES:
            raise GraphError(400, f"state must be one of {', '.join(sorted(CA_STATES))}.")
        if not isinstance(body.get("conditions"), dict):
            raise GraphError(400, "conditions is required.")
        if not isinstance(body.get("grantControls"), dict) and not isinstance(body.get("sessionControls"), dict):
            raise GraphError(400, "A policy needs grantControls or sessionControls.")
        policy = {**body, "id": str(uuid.uuid4()), "createdDateTime": format_datetime(utcnow()), "modifiedDateTime": None}
        data(request).conditional_access_policies.append(policy)
        return JSONResponse({"@odata.context": _context(request, "identity/conditionalAccess/policies/$entity"), **policy},
                            status_code=201)

    # ----------------------------------------------------------------------- audit log queries

    @router.post("/security/auditLog/queries")
    async def create_audit_query(request: Request) -> JSONResponse:
        body = await _json_object(request)
        for key in ("filterStartDateTime", "filterEndDateTime"):
            if not isinstance(body.get(key), str) or parse_iso(body[key]) is None:
                raise GraphError(400, f"{key} is required, an ISO 8601 date-time.")
        now = utcnow()
        audit_submissions[:] = [t for t in audit_submissions if now - t < timedelta(days=1)]
        unfinished = sum(1 for q in state.data.audit_queries.values() if q["status"] == "notStarted")
        if len(audit_submissions) >= AUDIT_QUERIES_PER_DAY or unfinished >= AUDIT_QUERIES_UNFINISHED:
            raise GraphError(429, f"The tenant's audit log query allocation is used up ({AUDIT_QUERIES_PER_DAY} queries "
                                  f"in 24 hours, {AUDIT_QUERIES_UNFINISHED} not finished).", "TooManyRequests")
        audit_submissions.append(now)
        query = {
            "id": str(uuid.uuid4()), "displayName": body.get("displayName"),
            "filterStartDateTime": body["filterStartDateTime"], "filterEndDateTime": body["filterEndDateTime"],
            "recordTypeFilters": body.get("recordTypeFilters", []), "keywordFilter": body.get("keywordFilter"),
            "serviceFilter": body.get("serviceFilter"), "operationFilters": body.get("operationFilters", []),
            "userPrincipalNameFilters": body.get("userPrincipalNameFilters", []),
            "ipAddressFilters": body.get("ipAddressFilters", []), "objectIdFilters": body.get("objectIdFilters", []),
            "administrativeUnitIdFilters": body.get("administrativeUnitIdFilters", []), "status": "notStarted",
            "recordCountLimit": AUDIT_RECORDS_PER_QUERY, "approximateReturnedRecordCount": None,
            "isRecordCountLimitExceeded": False,
        }
        data(request).audit_queries[query["id"]] = query
        return JSONResponse({"@odata.context": _context(request, "security/auditLog/queries/$entity"), **query},
                            status_code=201)

    def find_query(query_id: str) -> dict[str, Any]:
        query = state.data.audit_queries.get(query_id)
        if query is None:
            raise GraphError(404, f"Audit log query '{query_id}' was not found.", "NotFound")
        return query

    @router.get("/security/auditLog/queries/{query_id}")
    async def get_audit_query(query_id: str, request: Request) -> JSONResponse:
        query = find_query(query_id)
        if query["status"] == "notStarted":  # the search "runs" between the creation and the first poll
            found = sum(1 for r in state.data.audit_log if _in_query(r, query))
            query.update(status="succeeded", approximateReturnedRecordCount=min(found, AUDIT_RECORDS_PER_QUERY),
                         isRecordCountLimitExceeded=found > AUDIT_RECORDS_PER_QUERY)
        return JSONResponse({"@odata.context": _context(request, "security/auditLog/queries/$entity"), **query})

    @router.get("/security/auditLog/queries/{query_id}/records")
    async def audit_records(query_id: str, request: Request) -> JSONResponse:
        query = find_query(query_id)
        records = [
            _audit_record(r, i, state.tenant_id) for i, r in enumerate(state.data.audit_log) if _in_query(r, query)
        ][:AUDIT_RECORDS_PER_QUERY]
        return JSONResponse({"@odata.context": _context(request, f"security/auditLog/queries('{query_id}')/records"),
                             "value": records})

    return router


# --------------------------------------------------------------------------- helpers


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise GraphError(400, "Unable to read JSON request payload. Please ensure Content-Type header is set and "
                              "payload is of valid JSON format.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "The request body must be a JSON object.")
    return body


def _context(request: Request, what: str) -> str:
    version = request.url.path.split("/")[1]
    return f"{str(request.base_url).rstrip('/')}/{version}/$metadata#{what}"


def _top(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise GraphError(400, f"Invalid $top value '{text}'.")
    return int(text)


def _alerts_descending(text: str) -> bool:
    match = re.fullmatch(r"\s*createdDateTime(?:\s+(asc|desc))?\s*", text)
    if match is None:
        raise GraphError(400, f"Invalid $orderby value '{text}' (supported here: createdDateTime asc|desc).")
    return match[1] == "desc"


def _alert_key(alert: dict[str, Any]) -> tuple[datetime, str]:
    created = alert.get("createdDateTime")
    when = parse_iso(created) if isinstance(created, str) else None
    return when or _EPOCH, str(alert.get("id", ""))


def _skiptoken(key: tuple[datetime, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0].isoformat(), key[1]]).encode()).decode()


def _read_skiptoken(token: str) -> tuple[datetime, str]:
    try:
        created, alert_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        when = parse_iso(created)
    except (ValueError, TypeError):
        when = None
    if when is None:
        raise GraphError(400, "Invalid $skiptoken value.")
    return when, str(alert_id)


def _parse_filter(text: str, allowed: set[str]) -> list[tuple[str, str, Any]]:
    """OData `$filter` clauses `property op literal` joined by `and` (all this emulator needs)."""
    if not text.strip():
        return []
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if match is None or match[1] not in allowed:
            raise GraphError(400, f"Invalid filter clause: '{part}' (supported here: "
                                  f"{', '.join(sorted(allowed))} with eq/ne/ge/gt/le/lt, joined by and).")
        clauses.append((match[1], match[2], _literal(match[3])))
    return clauses


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    when = parse_iso(text)
    if when is not None:
        return when
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise GraphError(400, f"Invalid filter literal '{text}'.") from None


def _holds(item: dict[str, Any], clause: tuple[str, str, Any]) -> bool:
    name, op, wanted = clause
    value = item.get(name)
    if isinstance(wanted, datetime):
        value = parse_iso(value) if isinstance(value, str) else None
        if value is None:
            return False
    if op == "eq":
        return value == wanted
    if op == "ne":
        return value != wanted
    try:
        return {"ge": value >= wanted, "gt": value > wanted, "le": value <= wanted, "lt": value < wanted}[op]
    except TypeError:
        return False


def _role_definition(name: str) -> dict[str, Any]:
    template = ROLE_TEMPLATES.get(name)
    role_id = template or str(uuid.uuid5(_CUSTOM_ROLES, name))
    return {"id": role_id, "displayName": name, "description": f"{name} role", "isBuiltIn": template is not None,
            "isEnabled": True, "templateId": role_id, "version": "1", "rolePermissions": []}


def _reset_password(tenant: TenantData, user: dict[str, Any], profile: dict[str, Any]) -> None:
    profile = {k: v for k, v in profile.items() if not k.startswith("@odata.")}
    password = profile.get("password")
    unknown = set(profile) - {"password", "forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa"}
    if unknown:
        raise GraphError(400, f"Property '{sorted(unknown)[0]}' does not exist on passwordProfile.", "Request_BadRequest")
    if not isinstance(password, str) or not _complex_enough(password):
        raise GraphError(400, "The specified password does not comply with password complexity requirements. "
                              "Please provide a different password.", "Request_BadRequest")
    flags = {k: profile.get(k, False) for k in ("forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise GraphError(400, "Invalid value specified for property 'passwordProfile' of resource 'User'.",
                         "Request_BadRequest")
    salt = secrets.token_hex(8)
    tenant.password_hashes[user["id"]] = f"sha256${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"
    user["passwordProfile"] = flags
    user["lastPasswordChangeDateTime"] = format_datetime(utcnow().replace(microsecond=0))


def _complex_enough(password: str) -> bool:
    """Entra ID's rule: 8 to 256 characters, three of lower, upper, digit, symbol."""
    kinds = [any(c.islower() for c in password), any(c.isupper() for c in password),
             any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
    return 8 <= len(password) <= 256 and sum(kinds) >= 3


def _in_query(record: dict[str, Any], query: dict[str, Any]) -> bool:
    when = parse_iso(str(record.get("CreationDate", "")))
    start, end = parse_iso(query["filterStartDateTime"]), parse_iso(query["filterEndDateTime"])
    if when is None or start is None or end is None or not start <= when <= end:
        return False
    audit = record.get("AuditData", {})
    checks = [
        (query["operationFilters"], record.get("Operation")),
        (query["userPrincipalNameFilters"], record.get("UserIds")),
        (query["recordTypeFilters"], record.get("RecordType")),
        (query["objectIdFilters"], audit.get("ObjectId")),
        (query["ipAddressFilters"], audit.get("ClientIP")),
    ]
    return all(not wanted or str(value).casefold() in {str(w).casefold() for w in wanted} for wanted, value in checks)


def _assignment_id(user: dict[str, Any], definition: dict[str, Any]) -> str:
    return str(uuid.uuid5(_CUSTOM_ROLES, f"{user['id']}/{definition['id']}"))


def _audit_record(record: dict[str, Any], index: int, tenant_id: str) -> dict[str, Any]:
    audit = record.get("AuditData", {})
    record_type = str(record.get("RecordType", ""))
    service, data_type = AUDIT_SERVICES.get(record_type, ("Exchange", "exchangeAdminAuditRecord"))
    return {
        "id": str(audit.get("Id") or uuid.uuid5(_CUSTOM_ROLES, f"audit/{index}/{record.get('CreationDate')}")),
        "createdDateTime": record.get("CreationDate"),
        "auditLogRecordType": record_type[:1].lower() + record_type[1:],
        "operation": record.get("Operation"),
        "organizationId": tenant_id,
        "userType": "regular",
        "userId": record.get("UserIds"),
        "service": service,
        "objectId": audit.get("ObjectId"),
        "userPrincipalName": record.get("UserIds"),
        "clientIp": audit.get("ClientIP"),
        "administrativeUnits": [],
        "auditData": {"@odata.type": f"#microsoft.graph.security.{data_type}", **audit},
    }
