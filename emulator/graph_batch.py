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
from urllib.parse import unquote

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
        answers: list[dict[str, Any]] = []
        status: dict[str, int] = {}
        for item in requests:
            key = str(item["id"]).casefold()
            failed = [d for d in item.get("dependsOn") or [] if status[str(d).casefold()] >= 400]
            answer = _failed_dependency(item, failed) if failed else await _run(app, request, version, item)
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


async def _run(app: FastAPI, batch: Request, version: str, item: dict[str, Any]) -> dict[str, Any]:
    """One request of the batch through the app itself (ASGI, in process), with the batch's
    bearer token, as if it came on its own from the batch's client."""
    path, _, query = f"/{version}/{item['url'].lstrip('/')}".partition("?")
    headers = [(str(k).lower().encode(), str(v).encode()) for k, v in (item.get("headers") or {}).items()
               if str(k).lower() != "authorization"]
    headers.append((b"authorization", batch.headers.get("authorization", "").encode()))
    body = json.dumps(item["body"]).encode() if "body" in item else b""
    scope = {
        **{k: batch.scope[k] for k in ("type", "asgi", "http_version", "scheme", "server", "client", "root_path")},
        "method": item["method"].upper(), "path": unquote(path), "raw_path": path.encode(),
        "query_string": query.encode(), "headers": headers,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answered = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    answer: dict[str, Any] = {
        "id": item["id"],
        "status": start["status"],
        "headers": {k: v for k, v in answered.items() if k in ANSWERED_HEADERS},
    }
    if content:
        answer["body"] = json.loads(content)
    return answer


def _failed_dependency(item: dict[str, Any], failed: list[Any]) -> dict[str, Any]:
    message = f"Request '{item['id']}' depends on request '{failed[0]}', which failed."
    return {"id": item["id"], "status": 424, "headers": {"content-type": "application/json"},
            "body": {"error": {"code": "FailedDependency", "message": message}}}
