"""The app registration the emulator serves: its service principal, the application permissions it
was granted (app role assignments on Microsoft Graph and Office 365 Exchange Online) and its
directory roles. App-only tokens carry the granted app roles in their `roles` claim, as Entra ID's do.

By default the app holds every grant quell's actions need (and Application.Read.All, which lets
`quell doctor` read them); a scenario's `app: {withhold: [...]}` names app roles or directory roles
the app lacks. Graph routes: `/servicePrincipals?$filter=appId eq '…'`, `/servicePrincipals/{id}`,
`/servicePrincipals/{id}/appRoleAssignments` and `/servicePrincipals/{id}/memberOf`, each needing
Application.Read.All in the caller's token like Graph does. Deviation: app role ids are derived from
their names here, not Microsoft's published ids (clients look them up, as they must in a real tenant).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from emulator.errors import GraphError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
GRAPH_APP_ROLES = (
    "Application.Read.All", "AuditLogsQuery-Entra.Read.All", "AuditLogsQuery-Exchange.Read.All", "Policy.Read.All",
    "Policy.ReadWrite.ConditionalAccess", "RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory",
    "SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All", "ThreatHunting.Read.All", "User.Read.All",
    "User-PasswordProfile.ReadWrite.All", "User.RevokeSessions.All",
)
EXCHANGE_APP_ROLES = ("Exchange.ManageAsApp",)
GRANTED_BY_DEFAULT = (
    *(r for r in GRAPH_APP_ROLES if r not in ("SecurityAlert.Read.All", "RoleManagement.Read.Directory")),  # ReadWrite includes them
    *EXCHANGE_APP_ROLES,
)
DIRECTORY_ROLES_BY_DEFAULT = (
    "Exchange Administrator", "Privileged Authentication Administrator", "Privileged Role Administrator",
)
READ_APPLICATIONS = "Application.Read.All"
_IDS = uuid.UUID("5e0c4a51-7f3d-4d2b-9a8e-6b1f0c2d3e4f")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(parts)))


@dataclass(frozen=True)
class Resource:
    app_id: str
    display_name: str
    roles: tuple[str, ...]

    @property
    def object_id(self) -> str:
        return _id("sp", self.app_id)

    def role_id(self, name: str) -> str:
        return _id("approle", self.app_id, name)

    def service_principal(self) -> dict[str, Any]:
        return {
            "id": self.object_id, "appId": self.app_id, "displayName": self.display_name,
            "servicePrincipalType": "Application",
            "appRoles": [{"id": self.role_id(r), "value": r, "displayName": r, "isEnabled": True,
                          "allowedMemberTypes": ["Application"], "description": r, "origin": "Application"}
                         for r in self.roles],
        }


GRAPH = Resource(GRAPH_APP_ID, "Microsoft Graph", GRAPH_APP_ROLES)
EXCHANGE = Resource(EXCHANGE_APP_ID, "Office 365 Exchange Online", EXCHANGE_APP_ROLES)
RESOURCES = {"https://graph.microsoft.com": GRAPH, "https://outlook.office365.com": EXCHANGE}


@dataclass(frozen=True)
class AppRegistration:
    client_id: str
    display_name: str = "quell"
    withheld: frozenset[str] = field(default_factory=frozenset)

    @property
    def object_id(self) -> str:
        return _id("sp", self.client_id)

    def roles(self, audience: str) -> list[str]:
        """The app roles the app holds on an API (what its tokens for that audience carry)."""
        resource = RESOURCES.get(audience)
        granted = set(GRANTED_BY_DEFAULT) - self.withheld
        return [r for r in resource.roles if r in granted] if resource else []

    def directory_roles(self) -> list[str]:
        return [r for r in DIRECTORY_ROLES_BY_DEFAULT if r not in self.withheld]

    def service_principal(self) -> dict[str, Any]:
        return {"id": self.object_id, "appId": self.client_id, "displayName": self.display_name,
                "servicePrincipalType": "Application", "appRoles": []}


def principals_router(app: AppRegistration, role_templates: dict[str, str]) -> APIRouter:
    router = APIRouter()
    principals = {p["id"]: p for p in (app.service_principal(), GRAPH.service_principal(),
                                       EXCHANGE.service_principal())}

    def allowed(request: Request) -> None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        roles = jwt.decode(token, options={"verify_signature": False}).get("roles", [])  # the gate checked it
        if READ_APPLICATIONS not in roles:
            raise GraphError(403, "Insufficient privileges to complete the operation.", "Authorization_RequestDenied")

    def find(principal_id: str) -> dict[str, Any]:
        if principal_id not in principals:
            raise GraphError(404, f"Resource '{principal_id}' does not exist or one of its queried reference-property "
                                  "objects are not present.", "Request_ResourceNotFound")
        return principals[principal_id]

    @router.get("/servicePrincipals")
    async def list_principals(request: Request) -> JSONResponse:
        allowed(request)
        wanted = request.query_params.get("$filter", "")
        prefix = "appId eq '"
        if not (wanted.startswith(prefix) and wanted.endswith("'")):
            raise GraphError(400, "The emulator filters service principals by appId eq '<app id>' only.")
        app_id = wanted[len(prefix):-1]
        return JSONResponse({"value": [p for p in principals.values() if p["appId"] == app_id]})

    @router.get("/servicePrincipals/{principal_id}")
    async def get_principal(principal_id: str, request: Request) -> JSONResponse:
        allowed(request)
        return JSONResponse(find(principal_id))

    @router.get("/servicePrincipals/{principal_id}/appRoleAssignments")
    async def app_role_assignments(principal_id: str, request: Request) -> JSONResponse:
        allowed(request)
        find(principal_id)
        if principal_id != app.object_id:
            return JSONResponse({"value": []})
        assignments = [
            {"id": _id("assignment", app.object_id, resource.app_id, role), "appRoleId": resource.role_id(role),
             "principalId": app.object_id, "principalType": "ServicePrincipal",
             "principalDisplayName": app.display_name, "resourceId": resource.object_id,
             "resourceDisplayName": resource.display_name}
            for audience, resource in RESOURCES.items() for role in app.roles(audience)
        ]
        return JSONResponse({"value": assignments})

    @router.get("/servicePrincipals/{principal_id}/memberOf")
    async def member_of(principal_id: str, request: Request) -> JSONResponse:
        allowed(request)
        find(principal_id)
        roles = app.directory_roles() if principal_id == app.object_id else []
        return JSONResponse({"value": [
            {"@odata.type": "#microsoft.graph.directoryRole", "id": _id("directoryRole", name),
             "displayName": name, "roleTemplateId": role_templates[name]}
            for name in roles
        ]})

    return router
