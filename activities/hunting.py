"""Hunting query catalogue, the parameter renderer, and `security/runHuntingQuery`.

Graph's `runHuntingQuery` takes only `Query` and `Timespan`: there is no parameter binding in
production. Each catalogue query therefore declares its inputs with
`declare query_parameters(name:type, ...)`, and `render` replaces that declaration with typed
`let name = <literal>;` lines. `render` is the only place a value enters query text: it checks
each value against its declared type and encodes it so that it can only ever be a literal.
"""

from __future__ import annotations

import base64
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clients import TenantClients

QUERY_DIR = Path(__file__).parent / "queries"
REQUEST_TIMEOUT = httpx.Timeout(30.0, read=190.0)
"""Advanced hunting stops a request that runs more than 3 minutes and answers an error (Microsoft
Defender XDR "Advanced hunting API", quotas); the read timeout waits 10 s longer for that answer."""
TIMEOUT_MARKERS = ("timeout", "timed out")

DECLARATION = re.compile(r"declare\s+query_parameters\s*\((?P<body>[^)]*)\)\s*;", re.IGNORECASE)
PARAMETER = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<type>[A-Za-z]+)\s*$")
SUPPORTED_TYPES = {"string", "long", "int", "real", "bool", "datetime", "dynamic"}
INT64 = 2**63
ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
LINE_SEPARATORS = frozenset("\u0085\u2028\u2029")
"""Characters a lexer may take for a line break inside a literal, and that no KQL escape names:
a string holding one travels as `base64_decode_tostring("...")` (Kusto decodes it exactly;
duckdb-kql 1.1.2 mangles non-ASCII there, so the emulator matches nothing — failing closed)."""


class CatalogueError(ValueError):
    """A catalogue file does not have the Sentinel hunting-query shape."""


class ParameterError(ValueError):
    """A value does not fit its declared parameter (missing, extra, or the wrong type)."""


class DataConnector(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    connectorId: str
    dataTypes: list[str]


class HuntingQuery(BaseModel):
    """One catalogue entry, in the Sentinel hunting-query YAML shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    name: str
    description: str
    requiredDataConnectors: list[DataConnector] = Field(min_length=1)
    tactics: list[str]
    relevantTechniques: list[str]
    query: str
    version: str
    key: str = ""
    """The file name without `.yaml`: how activities name the query."""

    @field_validator("query")
    @classmethod
    def _declares_parameters(cls, query: str) -> str:
        if len(DECLARATION.findall(query)) != 1:
            raise ValueError("the query must hold exactly one `declare query_parameters(...);`")
        parse_declaration(query)
        return query

    @property
    def parameters(self) -> dict[str, str]:
        return parse_declaration(self.query)


def parse_declaration(query: str) -> dict[str, str]:
    """`{name: type}` from the query's `declare query_parameters(...)` statement."""
    match = DECLARATION.search(query)
    if match is None:
        raise CatalogueError("no `declare query_parameters(...);` statement")
    declared: dict[str, str] = {}
    for item in match["body"].split(","):
        parameter = PARAMETER.match(item)
        if parameter is None:
            raise CatalogueError(f"cannot read parameter declaration {item.strip()!r} (no defaults allowed)")
        name, kind = parameter["name"], parameter["type"].lower()
        if kind not in SUPPORTED_TYPES:
            raise CatalogueError(f"parameter {name}: unsupported type {kind}")
        if name in declared:
            raise CatalogueError(f"parameter {name} declared twice")
        declared[name] = kind
    return declared


def load_catalogue(directory: Path = QUERY_DIR) -> dict[str, HuntingQuery]:
    """Every `*.yaml` in the directory, validated, by file name."""
    catalogue: dict[str, HuntingQuery] = {}
    ids: set[uuid.UUID] = set()
    for path in sorted(directory.glob("*.yaml")):
        try:
            entry = HuntingQuery.model_validate({**yaml.safe_load(path.read_text()), "key": path.stem})
        except (ValueError, TypeError) as invalid:
            raise CatalogueError(f"{path.name}: {invalid}") from invalid
        if entry.id in ids:
            raise CatalogueError(f"{path.name}: id {entry.id} is used twice")
        ids.add(entry.id)
        catalogue[path.stem] = entry
    return catalogue


@lru_cache(maxsize=1)
def default_catalogue() -> dict[str, HuntingQuery]:
    return load_catalogue()


# --------------------------------------------------------------------------- literals


def _quoted(text: str) -> str:
    return '"' + "".join(ESCAPES.get(ch, ch) for ch in text) + '"'


def _base64(text: str) -> str:
    return f'base64_decode_tostring("{base64.b64encode(text.encode("utf-8")).decode("ascii")}")'


def string_literal(value: str) -> str:
    """A KQL expression whose value is exactly `value`: a double-quoted literal with `\\`, `\"`,
    `\n`, `\r`, `\t` escaped (any other character is literal text there), or base64."""
    if "\x00" in value:
        raise ParameterError("a string parameter may not hold NUL")
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        raise ParameterError("a string parameter must be valid Unicode (lone surrogate)")
    return _base64(value) if LINE_SEPARATORS & set(value) else _quoted(value)


def _scalar(value: Any, kind: str, name: str) -> str:
    if kind == "string":
        if not isinstance(value, str):
            raise ParameterError(f"{name}: expected string, got {type(value).__name__}")
        return string_literal(value)
    if kind in ("long", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"{name}: expected {kind}, got {type(value).__name__}")
        limit = INT64 if kind == "long" else 2**31
        if not -limit <= value < limit:
            raise ParameterError(f"{name}: {value} does not fit {kind}")
        return str(value)
    if kind == "real":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParameterError(f"{name}: expected a finite real, got {value!r}")
        return repr(float(value))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(f"{name}: expected bool, got {type(value).__name__}")
        return "true" if value else "false"
    if kind == "datetime":
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ParameterError(f"{name}: expected a timezone-aware datetime")
        return f"datetime({value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"
    raise ParameterError(f"{name}: unsupported type {kind}")


def _dynamic(value: Any, name: str) -> str:
    """A flat list as `dynamic([...])`, or `pack_array(...)` when a string must be base64-encoded."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ParameterError(f"{name}: expected a list for dynamic, got {type(value).__name__}")
    items: list[str] = []
    for item in value:
        if isinstance(item, str):
            items.append(string_literal(item))
        elif isinstance(item, bool):
            items.append(_scalar(item, "bool", name))
        elif isinstance(item, int):
            items.append(_scalar(item, "long", name))
        elif isinstance(item, float):
            items.append(_scalar(item, "real", name))
        else:
            raise ParameterError(f"{name}: list items must be str, int, float or bool")
    if any(i.startswith("base64_decode_tostring") for i in items):
        return f"pack_array({', '.join(items)})"
    return f"dynamic([{', '.join(items)}])"


def render(query: str, params: Mapping[str, Any]) -> str:
    """Replace the declaration with one `let name = <literal>;` line per declared parameter."""
    declared = parse_declaration(query)
    missing = sorted(set(declared) - set(params))
    extra = sorted(set(params) - set(declared))
    if missing or extra:
        raise ParameterError(f"parameters missing: {missing}, not declared: {extra}")
    lines = [
        f"let {name} = {_dynamic(params[name], name) if kind == 'dynamic' else _scalar(params[name], kind, name)};"
        for name, kind in declared.items()
    ]
    match = DECLARATION.search(query)
    assert match is not None  # parse_declaration found it
    return query[: match.start()] + "\n".join(lines) + query[match.end() :]


# --------------------------------------------------------------------------- Graph


async def run_hunting_query(
    clients: TenantClients,
    query_id: str,
    params: Mapping[str, Any],
    catalogue: Mapping[str, HuntingQuery] | None = None,
) -> list[dict[str, Any]]:
    """Run one catalogue query through Graph advanced hunting and return its result rows.

    Errors arrive as the `ApplicationError`s `GraphHttp` maps (429/5xx retryable with
    Retry-After); the query text is never put into an error or a log line.
    """
    entry = (catalogue or default_catalogue())[query_id]
    body = {"Query": render(entry.query, params)}
    try:
        answer = await clients.graph_http.request("POST", "/security/runHuntingQuery", json=body,
                                                  timeout=REQUEST_TIMEOUT)
    except httpx.TimeoutException:
        raise hunting_timeout(query_id) from None
    except ApplicationError as failure:
        if any(marker in str(failure).casefold() for marker in TIMEOUT_MARKERS):
            raise hunting_timeout(query_id) from None
        raise
    results = (answer or {}).get("results", [])
    return results if isinstance(results, list) else []


def hunting_timeout(query_id: str) -> ApplicationError:
    """A query that ran out of time is retried once (the next attempt may find the tenant less
    busy); a second timeout is final, and the source is reported unavailable."""
    attempt = activity.info().attempt if activity.in_activity() else 1
    return ApplicationError(
        f"hunting query {query_id} timed out (attempt {attempt})", type="HuntingTimeout", non_retryable=attempt >= 2
    )
