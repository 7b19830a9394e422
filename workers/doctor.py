"""`quell doctor`: is this deployment ready to respond?

Temporal (reachable, namespace, quell's search attributes), payload encryption (the codec keys
encrypt and decrypt), and per configured tenant: tokens for Graph and Exchange, and the app's
grants against what the configuration needs (`activities.permissions.required`). Granted app roles
are read from each token's `roles` claim (what the app can do now) and, with Application.Read.All,
from the service principal's app role assignments; directory roles from its `memberOf`. Every gap
is a failed check with the exact grant to add. Nothing printed carries a secret or a token.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote

import jwt
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.clients import GraphHttp, build_credential
from activities.pacing import Pacer
from activities.permissions import (
    DIRECTORY_ROLE_TEMPLATES,
    DOCTOR,
    EXCHANGE_APP_ID,
    GRAPH_APP_ID,
    IMPLIED_BY,
    KIND_NAMES,
    Grant,
    required,
)
from config.settings import EXO_SCOPE, GRAPH_SCOPE, Settings, TenantSettings
from workers.codec import encryption_codec
from workers.temporal_connection import connect
from workflows import search_attributes as sa

Status = Literal["ok", "warn", "fail"]
CONNECT_TIMEOUT = timedelta(seconds=10)
SA_TYPES = {"KEYWORD": ("Keyword", IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
            "BOOL": ("Bool", IndexedValueType.INDEXED_VALUE_TYPE_BOOL)}


class Check(BaseModel):
    scope: str
    """"temporal", "codec" or "tenant <id>"."""
    name: str
    status: Status
    detail: str = ""
    fix: str | None = None
    """What to run or grant to close the gap."""


class DoctorReport(BaseModel):
    ok: bool
    """No check failed (warnings allowed)."""
    checks: list[Check]


async def diagnose(settings: Settings, address: str | None = None) -> DoctorReport:
    checks = [*await temporal_checks(settings, address), await codec_check(settings)]
    needed = required(settings)
    for tenant in settings.tenants:
        checks += await tenant_checks(tenant, needed)
    if not settings.tenants:
        checks.append(Check(scope="tenants", name="configured", status="fail", detail="no tenant is configured",
                            fix="add a [[tenants]] block (config/quell.example.toml)"))
    return DoctorReport(ok=all(c.status != "fail" for c in checks), checks=checks)


# --------------------------------------------------------------------------- Temporal and the codec


async def temporal_checks(settings: Settings, address: str | None) -> list[Check]:
    temporal = settings.temporal
    target = address or temporal.address
    try:
        client = await asyncio.wait_for(connect(settings, address), CONNECT_TIMEOUT.total_seconds())
    except (RuntimeError, TimeoutError, ValueError) as failure:
        reason = "timed out" if isinstance(failure, TimeoutError) else str(failure).splitlines()[0][:300]
        return [Check(scope="temporal", name="reachable", status="fail", detail=f"{target}: {reason}",
                      fix="check temporal.address and the [temporal] TLS / API key settings")]
    checks = [Check(scope="temporal", name="reachable", status="ok", detail=target)]
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=temporal.namespace))
    except RPCError as failure:
        checks.append(Check(scope="temporal", name="namespace", status="fail",
                            detail=f"{temporal.namespace}: {failure.status.name}",
                            fix=f"temporal operator namespace create --namespace {temporal.namespace}"))
        return checks
    checks.append(Check(scope="temporal", name="namespace", status="ok", detail=temporal.namespace))
    checks += await _search_attributes(client, temporal.namespace)
    return checks


async def _search_attributes(client: Client, namespace: str) -> list[Check]:
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError as failure:
        return [Check(scope="temporal", name="search attributes", status="warn",
                      detail=f"cannot list them ({failure.status.name}); check {', '.join(k.name for k in sa.ALL)}")]
    checks = []
    for key in sa.ALL:
        type_name, wanted = SA_TYPES[key.indexed_value_type.name]
        have = listed.custom_attributes.get(key.name)
        if have == wanted:
            checks.append(Check(scope="temporal", name=f"search attribute {key.name}", status="ok", detail=type_name))
            continue
        detail = "missing" if have is None else f"registered as {IndexedValueType.Name(have)}, not {type_name}"
        checks.append(Check(scope="temporal", name=f"search attribute {key.name}", status="fail", detail=detail,
                            fix=f"temporal operator search-attribute create --namespace {namespace} "
                                f"--name {key.name} --type {type_name}"))
    return checks


async def codec_check(settings: Settings) -> Check:
    codec = encryption_codec(settings.codec)
    if codec is None:
        return Check(scope="codec", name="payload encryption", status="warn",
                     detail="off: case data reaches Temporal in the clear",
                     fix="set [codec] current and keys (base64 of 32 random bytes: openssl rand -base64 32)")
    probe = Payload(metadata={"encoding": b"json/plain"}, data=b'"quell doctor"')
    if (await codec.decode(await codec.encode([probe])))[0] != probe:
        return Check(scope="codec", name="payload encryption", status="fail",
                     detail="the keys do not decrypt what they encrypt")
    return Check(scope="codec", name="payload encryption", status="ok",
                 detail=f"AES-256-GCM, current key {settings.codec.current}, {len(settings.codec.keys)} key(s)")


# --------------------------------------------------------------------------- a tenant's app registration


@dataclass(frozen=True)
class AppGrants:
    """What Graph says the app holds (None: it could not be read)."""

    principal_id: str | None = None
    app_roles: set[tuple[str, str]] | None = None
    """(resource app id, app role value) of every app role assignment."""
    role_ids: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(resource app id, value) -> (resource service principal id, app role id), for the fix commands."""
    directory_roles: set[str] | None = None
    unreadable: str | None = None


async def tenant_checks(tenant: TenantSettings, needed: dict[Grant, list[str]]) -> list[Check]:
    scope = f"tenant {tenant.tenant_id}"
    credential = build_credential(tenant)
    try:
        claims: dict[str, dict[str, Any] | None] = {}
        checks = []
        for api, token_scope in (("Microsoft Graph", GRAPH_SCOPE), ("Exchange Online", EXO_SCOPE)):
            check, claims[api] = await _token(credential, token_scope, scope, api)
            checks.append(check)
        if claims["Microsoft Graph"] is None:
            return checks  # without a Graph token nothing else can be read
        graph = GraphHttp(tenant.graph_base_url, credential, Pacer(tenant.tenant_id, None))  # no activity: unpaced
        try:
            grants = await _app_grants(graph, tenant.client_id)
        finally:
            await graph.aclose()
    finally:
        await credential.close()
    if grants.unreadable:
        checks.append(Check(scope=scope, name="app grants readable", status="warn", detail=grants.unreadable,
                            fix=f"optional: grant {DOCTOR.name} ({_console(tenant, DOCTOR)}) so that doctor can "
                                "read the app's assignments and directory roles"))
    token_roles = {
        GRAPH_APP_ID: set((claims["Microsoft Graph"] or {}).get("roles", [])),
        EXCHANGE_APP_ID: set((claims["Exchange Online"] or {}).get("roles", [])),
    }
    for grant, users in needed.items():
        checks.append(_grant_check(tenant, scope, grant, users, token_roles, grants))
    return checks


async def _token(credential: AsyncTokenCredential, token_scope: str, scope: str,
                 api: str) -> tuple[Check, dict[str, Any] | None]:
    try:
        token = await credential.get_token(token_scope)
    except AzureError as failure:
        reason = (failure.message or type(failure).__name__).splitlines()[0][:300]
        return Check(scope=scope, name=f"token for {api}", status="fail", detail=reason,
                     fix="check the tenant's authority_host, client_id and its client_secret or certificate_path"), None
    try:
        claims = jwt.decode(token.token, options={"verify_signature": False})
    except jwt.DecodeError:
        return Check(scope=scope, name=f"token for {api}", status="warn",
                     detail="acquired, but not a JWT: its roles cannot be read"), {}
    return Check(scope=scope, name=f"token for {api}", status="ok",
                 detail=f"roles: {', '.join(sorted(claims.get('roles', []))) or 'none'}"), claims


def _filter(app_id: str) -> str:
    # Spaces as %20: Graph's OData parser does not take the `+` of form encoding.
    return f"/servicePrincipals?$filter={quote(f'appId eq {chr(39)}{app_id}{chr(39)}', safe=chr(39))}"


async def _app_grants(graph: GraphHttp, client_id: str) -> AppGrants:
    try:
        found = (await graph.request("GET", _filter(client_id)))["value"]
        if not found:
            return AppGrants(unreadable=f"no service principal has appId {client_id}")
        principal = found[0]["id"]
        assignments = (await graph.request("GET", f"/servicePrincipals/{principal}/appRoleAssignments"))["value"]
        role_ids: dict[tuple[str, str], tuple[str, str]] = {}
        for app_id in (GRAPH_APP_ID, EXCHANGE_APP_ID):
            for resource in (await graph.request("GET", _filter(app_id)))["value"]:
                for role in resource.get("appRoles", []):
                    role_ids[(app_id, role["value"])] = (resource["id"], role["id"])
        by_id = {ids: key for key, ids in role_ids.items()}
        app_roles = {by_id[(a["resourceId"], a["appRoleId"])] for a in assignments
                     if (a["resourceId"], a["appRoleId"]) in by_id}
        member_of = (await graph.request("GET", f"/servicePrincipals/{principal}/memberOf"))["value"]
    except ApplicationError as failure:
        return AppGrants(unreadable=f"cannot read the app's grants: {str(failure)[:300]}")
    directory_roles = {m.get("displayName", "") for m in member_of
                       if m.get("@odata.type") == "#microsoft.graph.directoryRole"}
    return AppGrants(principal_id=principal, app_roles=app_roles, role_ids=role_ids, directory_roles=directory_roles)


def _grant_check(tenant: TenantSettings, scope: str, grant: Grant, users: list[str],
                 token_roles: dict[str, set[str]], grants: AppGrants) -> Check:
    name = f"{KIND_NAMES[grant.kind]} {grant.name}"
    why = f"needed by {', '.join(users)}"
    if grant.kind == "directory_role":
        if grants.directory_roles is None:
            return Check(scope=scope, name=name, status="warn", detail=f"not verified ({why})")
        if grant.name in grants.directory_roles:
            return Check(scope=scope, name=name, status="ok", detail="assigned")
        return Check(scope=scope, name=name, status="fail", detail=f"missing ({why})",
                     fix=_role_assignment(tenant, grant, grants.principal_id))
    resource = grant.resource_app_id or ""
    satisfying = {grant.name} | ({IMPLIED_BY[grant].name} if grant in IMPLIED_BY else set())
    if satisfying & token_roles[resource]:
        return Check(scope=scope, name=name, status="ok", detail="in the token")
    if grants.app_roles is not None and {(resource, r) for r in satisfying} & grants.app_roles:
        return Check(scope=scope, name=name, status="warn",
                     detail=f"granted, not yet in the token: tokens are cached for up to an hour ({why})")
    return Check(scope=scope, name=name, status="fail", detail=f"missing ({why})",
                 fix=_app_role_assignment(tenant, grant, grants))


def _console(tenant: TenantSettings, grant: Grant) -> str:
    api = "Microsoft Graph" if grant.kind == "graph" else "Office 365 Exchange Online"
    return (f"Entra admin center > App registrations > {tenant.client_id} > API permissions > Add a permission > "
            f"{api} > Application permissions > {grant.name}, then Grant admin consent")


def _rest(tenant: TenantSettings, path: str, body: dict[str, str]) -> str:
    url = f"{tenant.graph_base_url.rstrip('/')}/v1.0{path}"
    return f"az rest --method POST --url '{url}' --body '{json.dumps(body, separators=(',', ':'))}'"


def _app_role_assignment(tenant: TenantSettings, grant: Grant, grants: AppGrants) -> str:
    ids = grants.role_ids.get((grant.resource_app_id or "", grant.name))
    if grants.principal_id is None or ids is None:
        return _console(tenant, grant)
    resource, role = ids
    return _rest(tenant, f"/servicePrincipals/{grants.principal_id}/appRoleAssignments",
                 {"principalId": grants.principal_id, "resourceId": resource, "appRoleId": role})


def _role_assignment(tenant: TenantSettings, grant: Grant, principal: str | None) -> str:
    return _rest(tenant, "/roleManagement/directory/roleAssignments", {
        "principalId": principal or f"<object id of the service principal of {tenant.client_id}>",
        "roleDefinitionId": DIRECTORY_ROLE_TEMPLATES[grant.name],
        "directoryScopeId": "/",
    })


# --------------------------------------------------------------------------- output


MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def text_report(report: DoctorReport) -> str:
    lines = []
    for check in report.checks:
        lines.append(f"{MARKS[check.status]}  {check.scope}: {check.name}" + (f": {check.detail}" if check.detail else ""))
        if check.fix and check.status != "ok":
            lines.append(f"      fix: {check.fix}")
    counts = {status: sum(1 for c in report.checks if c.status == status) for status in MARKS}
    lines.append(f"{len(report.checks)} checks: {counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed")
    return "\n".join(lines)
