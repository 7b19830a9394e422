"""Clients for one tenant: msgraph-sdk for Graph, httpx for EXO InvokeCommand and raw Graph calls.

One retry layer: the SDK's retry middleware and azure-identity's token request retries are off,
and every 429/503/5xx becomes an `ApplicationError` that Temporal retries, honouring `Retry-After`
through `next_retry_delay`.
Error messages carry Microsoft's code and message, never a token or a request body.
All three httpx clients carry the tenant's pacing hooks (activities/pacing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from kiota_abstractions.api_error import APIError
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory
from temporalio.exceptions import ApplicationError

from activities.pacing import Pacer, retry_delay
from config.settings import EXO_SCOPE, GRAPH_SCOPE, QuotaSettings, TenantSettings

RETRYABLE = {429, 500, 502, 503, 504}
TIMEOUT = httpx.Timeout(30.0)


def api_failure(service: str, status: int, message: str, headers: Any = None) -> ApplicationError:
    """Map an HTTP failure to the error Temporal should see: retryable or not, with a delay."""
    kind = "Throttled" if status in (429, 503) else f"Http{status}"
    return ApplicationError(
        f"{service} answered {status}: {message}"[:500],
        type=f"{service}{kind}",
        non_retryable=status not in RETRYABLE,
        next_retry_delay=retry_delay(headers) if status in (429, 503) else None,
    )


def graph_failure(error: APIError) -> ApplicationError:
    status = error.response_status_code or 0
    return api_failure("Graph", status, error.primary_message or "", error.response_headers)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return _error_text(body)


def _error_text(body: Any) -> str:
    """Microsoft's error code, message and first detail, from an error body."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        return str(error)[:300]
    details = error.get("details") or []
    detail = details[0].get("message", "") if details and isinstance(details[0], dict) else ""
    return " | ".join(p for p in (error.get("code", ""), error.get("message", ""), detail) if p)


class ExoError(Exception):
    """A cmdlet failed in Exchange (not a transport failure): e.g. object not found."""


class ExoNotFound(ExoError):
    """The cmdlet's object does not exist (Exchange's ManagementObjectNotFoundException)."""


NOT_FOUND_MARKERS = ("managementobjectnotfoundexception", "couldn't be found")


class ExoClient:
    """Exchange Online admin REST (`InvokeCommand`): parameters are always a JSON object."""

    def __init__(self, base_url: str, tenant_id: str, credential: AsyncTokenCredential, pacer: Pacer) -> None:
        self._url = f"{base_url.rstrip('/')}/adminapi/beta/{tenant_id}/InvokeCommand"
        self._credential = credential
        self._http = httpx.AsyncClient(timeout=TIMEOUT, event_hooks=pacer.event_hooks())

    async def invoke(self, cmdlet: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every object the cmdlet returns: a large result comes in pages, each `@odata.nextLink`
        asked for with the same body (as the ExchangeOnlineManagement module does), on this
        tenant's InvokeCommand URL only (the token goes nowhere else)."""
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        found: list[dict[str, Any]] = []
        url: str | None = self._url
        while url is not None:
            if url != self._url and not url.startswith(self._url + "?"):
                raise ApplicationError("Exchange nextLink points outside the tenant's InvokeCommand URL",
                                       type="ExchangeBadNextLink", non_retryable=True)
            token = await self._credential.get_token(EXO_SCOPE)
            response = await self._http.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token.token}", "X-AnchorMailbox": "APP"},
            )
            if response.status_code in RETRYABLE or response.status_code in (401, 403):
                raise api_failure(f"Exchange {cmdlet}", response.status_code, _error_message(response), response.headers)
            if response.status_code >= 400:
                message = f"{cmdlet}: {_error_message(response)}"
                if any(marker in message.casefold() for marker in NOT_FOUND_MARKERS):
                    raise ExoNotFound(message[:500])
                raise ExoError(message[:500])
            page = response.json()
            value = page.get("value", [])
            found.extend(value if isinstance(value, list) else [value])
            url = page.get("@odata.nextLink")
        return found

    async def aclose(self) -> None:
        await self._http.aclose()


BATCH_LIMIT = 20
"""Requests in one Graph JSON batch (Microsoft's limit)."""


@dataclass(frozen=True)
class BatchAnswer:
    """One request's answer inside a Graph JSON batch."""

    status: int
    headers: dict[str, str]
    body: Any

    def failure(self) -> ApplicationError | None:
        """The error this answer is, as a request of its own would raise it (None: it succeeded)."""
        if self.status < 400:
            return None
        return api_failure("Graph", self.status, _error_text(self.body), self.headers)


class GraphHttp:
    """Raw Graph JSON calls for what the SDK models badly (alert comments, hunting results) and
    JSON batches (alert write-backs for many alerts)."""

    def __init__(self, base_url: str, credential: AsyncTokenCredential, pacer: Pacer) -> None:
        self._base = f"{base_url.rstrip('/')}/v1.0"
        self._credential = credential
        self._http = httpx.AsyncClient(timeout=TIMEOUT, event_hooks=pacer.event_hooks())

    async def request(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """`path` is relative to `/v1.0`, or an absolute `@odata.nextLink` on this tenant's Graph
        host (anything else is refused, so the token never goes to another host). `timeout`
        replaces the client's for calls Microsoft lets run longer (hunting queries)."""
        if path.startswith(("https://", "http://")):
            if not path.startswith(self._base + "/"):
                raise ApplicationError("Graph nextLink points outside the tenant's Graph base URL",
                                       type="GraphBadNextLink", non_retryable=True)
            url = path
        else:
            url = f"{self._base}{path}"
        token = await self._credential.get_token(GRAPH_SCOPE)
        response = await self._http.request(
            method,
            url,
            json=json,
            params=params,
            headers={"Authorization": f"Bearer {token.token}"},
            timeout=timeout or self._http.timeout,
        )
        if response.status_code >= 400:
            raise api_failure("Graph", response.status_code, _error_message(response), response.headers)
        return response.json() if response.content else None

    async def batch(self, requests: dict[str, dict[str, Any]]) -> dict[str, BatchAnswer]:
        """Up to BATCH_LIMIT requests (`method`, `url` relative to the version, optional `body`) by
        id, in one `POST /$batch`; each request's answer by its id. A request's failure is its
        answer's (`BatchAnswer.failure`), not an exception; a refused batch raises as `request` does."""
        if not 0 < len(requests) <= BATCH_LIMIT:
            raise ValueError(f"a Graph batch holds 1 to {BATCH_LIMIT} requests, not {len(requests)}")
        body = {"requests": [
            {"id": key, **item, **({"headers": {"Content-Type": "application/json"}} if "body" in item else {})}
            for key, item in requests.items()
        ]}
        answered = await self.request("POST", "/$batch", json=body)
        answers = {
            str(a.get("id")): BatchAnswer(int(a.get("status", 0)), {str(k): str(v) for k, v in (a.get("headers") or {}).items()},
                                          a.get("body"))
            for a in (answered or {}).get("responses") or []
        }
        if missing := sorted(set(requests) - set(answers)):
            raise ApplicationError(f"Graph answered no response to batch request(s) {', '.join(missing)[:200]}",
                                   type="GraphBatchIncomplete")
        return answers

    async def aclose(self) -> None:
        await self._http.aclose()


def build_credential(tenant: TenantSettings) -> AsyncTokenCredential:
    common = {
        "authority": tenant.authority_host,
        "disable_instance_discovery": tenant.disable_instance_discovery,
        # azure-core's pipeline would retry a failed token request 3 times (4.8 s of backoff when
        # the tenant refuses connections) inside every activity attempt: Temporal is the one layer.
        "retry_total": 0,
    }
    if tenant.certificate_path is not None:
        return CertificateCredential(
            tenant.tenant_id, tenant.client_id, certificate_path=str(tenant.certificate_path), **common
        )
    assert tenant.client_secret is not None  # enforced by TenantSettings
    return ClientSecretCredential(
        tenant.tenant_id, tenant.client_id, tenant.client_secret.get_secret_value(), **common
    )


@dataclass
class TenantClients:
    tenant: TenantSettings
    credential: AsyncTokenCredential
    graph: GraphServiceClient
    graph_http: GraphHttp
    exo: ExoClient
    sdk_connections: httpx.AsyncHTTPTransport
    """The connections under the Graph SDK's client, closed here: closing that client does not close
    them, as msgraph-core's middleware transport (`AsyncGraphTransport`) wraps this transport and has
    no `aclose` of its own. Left open, they kept `quell emulator` from stopping after a bench part."""

    async def aclose(self) -> None:
        await self.exo.aclose()
        await self.graph_http.aclose()
        await self.sdk_connections.aclose()
        await self.credential.close()


def build_clients(tenant: TenantSettings, pacer: Pacer) -> TenantClients:
    credential = build_credential(tenant)
    connections = httpx.AsyncHTTPTransport()
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(timeout=TIMEOUT, event_hooks=pacer.event_hooks(), transport=connections),
        options={RetryHandlerOption.get_key(): RetryHandlerOption(should_retry=False)},
    )
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[GRAPH_SCOPE], allowed_hosts=[tenant.graph_host]
    )
    adapter = GraphRequestAdapter(auth, http)
    adapter.base_url = f"{tenant.graph_base_url.rstrip('/')}/v1.0"
    return TenantClients(
        tenant=tenant,
        credential=credential,
        graph=GraphServiceClient(request_adapter=adapter),
        graph_http=GraphHttp(tenant.graph_base_url, credential, pacer),
        exo=ExoClient(tenant.exo_base_url, tenant.tenant_id, credential, pacer),
        sdk_connections=connections,
    )


class ClientPool:
    """Clients per tenant, built on first use and shared by every activity of a worker; their
    calls are paced by `quotas` when given and enabled (the worker's `[quotas]`)."""

    def __init__(self, tenants: list[TenantSettings], quotas: QuotaSettings | None = None) -> None:
        self._tenants = {t.tenant_id: t for t in tenants}
        self._quotas = quotas.families() if quotas is not None and quotas.enabled else None
        self._clients: dict[str, TenantClients] = {}

    def for_tenant(self, tenant_id: str) -> TenantClients:
        if tenant_id not in self._clients:
            if tenant_id not in self._tenants:
                raise ApplicationError(
                    f"tenant {tenant_id} is not configured on this worker",
                    type="UnknownTenant",
                    non_retryable=True,
                )
            self._clients[tenant_id] = build_clients(self._tenants[tenant_id], Pacer(tenant_id, self._quotas))
        return self._clients[tenant_id]

    async def aclose(self) -> None:
        for clients in self._clients.values():
            await clients.aclose()
        self._clients.clear()
