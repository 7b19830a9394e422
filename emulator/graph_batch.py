"""Graph JSON batching: `POST /v1.0/$batch` (and `/beta`), as Microsoft documents it.

A batch holds 1 to 20 requests, each with an `id` unique in the batch (case-insensitively), a
`method`, a `url` relative to the version (`/security/alerts_v2/{id}`), optional `headers` and a
JSON `body` (which needs a `Content-Type` header), and optional `dependsOn` (ids of other requests
of the batch). A malformed batch answers 400 as a whole; otherwise 200 with one answer per request
(`id`, `status`, `headers`, `body`), whatever each request's own status. Each request passes the
same gate as a request of its own (the batch's bearer token, the scenario's faults, the call log),
so a request throttled inside a batch answers its own 429 with `Retry-After`. The emulator runs
them in the batch's order, one at a time (Microsoft may run independent ones in any order); a
request whose dependency failed answers 424 without running.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emulator.errors import GraphError

LIMIT = 20
METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
ANSWERED_HEADERS = {"content-type", "retry-after", "location"}


def batch_routes(app: FastAPI) -> None:
    """Serve `$batch` under both Graph versions, each request through `app` itself."""

    async def batch(request: Request) -> JSONResponse:
        version = request.url.path.split("/")[1]
        requests = _requests(await request.body())
        authorization = request.headers.get("authorization", "")
        transport = httpx.ASGITransport(app=app, client=(request.client.host, request.client.port) if request.client
                                        else ("127.0.0.1", 0))
        answers: list[dict[str, Any]] = []
        status: dict[str, int] = {}
        async with httpx.AsyncClient(transport=transport, base_url=str(request.base_url)) as inner:
            for item in requests:
                key = str(item["id"]).casefold()
                failed = [d for d in item.get("dependsOn") or [] if status[str(d).casefold()] >= 400]
                if failed:
                    answer = _failed_dependency(item, failed)
                else:
                    answer = await _run(inner, version, authorization, item)
                status[key] = answer["status"]
                answers.append(answer)
        return JSONResponse({"responses": answers})

    for version in ("v1.0", "beta"):
        app.add_api_route(f"/{version}/$batch", batch, methods=["POST"])


def _requests(raw: bytes) -> list[dict[str, Any]]:
    """The batch's requests, or the 400 that says what is malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GraphError(400, "Invalid batch payload: the body is not JSON.") from None
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise GraphError(400, "Invalid batch payload: 'requests' must be a non-empty array.")
    if len(requests) > LIMIT:
        raise GraphError(400, f"Invalid batch payload: a batch holds at most {LIMIT} requests.")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k] for k in ("id", "method", "url")):
            raise GraphError(400, "Invalid batch payload: every request needs an 'id', a 'method' and a 'url'.")
        key = item["id"].casefold()
        if key in seen:
            raise GraphError(400, f"Invalid batch payload: the request id '{item['id'][:40]}' is not unique.")
        if item["method"].upper() not in METHODS:
            raise GraphError(400, f"Invalid batch payload: method '{item['method'][:10]}' is not supported.")
        if item["url"].lower().startswith(("http:", "https:")) or item["url"].lstrip("/").startswith("$batch"):
            raise GraphError(400, "Invalid batch payload: a request's url is relative to the version, and not a batch.")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise GraphError(400, "Invalid batch payload: a request's 'headers' must be an object.")
        if "body" in item and not any(k.casefold() == "content-type" for k in headers):
            raise GraphError(400, "Invalid batch payload: a request with a body needs a Content-Type header.")
        depends = item.get("dependsOn") or []
        if not isinstance(depends, list) or any(str(d).casefold() not in seen for d in depends):
            raise GraphError(400, "Invalid batch payload: 'dependsOn' names requests earlier in the batch.")
        seen.add(key)
    return requests


async def _run(inner: httpx.AsyncClient, version: str, authorization: str, item: dict[str, Any]) -> dict[str, Any]:
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    headers["Authorization"] = authorization
    body = item.get("body")
    response = await inner.request(
        item["method"].upper(), f"/{version}/{item['url'].lstrip('/')}", headers=headers,
        content=json.dumps(body).encode() if "body" in item else None,
    )
    answer: dict[str, Any] = {
        "id": item["id"],
        "status": response.status_code,
        "headers": {k: v for k, v in response.headers.items() if k.lower() in ANSWERED_HEADERS},
    }
    if response.content:
        answer["body"] = response.json()
    return answer


def _failed_dependency(item: dict[str, Any], failed: list[Any]) -> dict[str, Any]:
    message = f"Request '{item['id']}' depends on request '{failed[0]}', which failed."
    return {"id": item["id"], "status": 424, "headers": {"content-type": "application/json"},
            "body": {"error": {"code": "FailedDependency", "message": message}}}
