"""Leading `let name = <literal>;` lines back into a declaration and its values.

quell renders each catalogue query's `declare query_parameters(...)` into typed `let` literals
(Graph has no parameter binding; activities/hunting.py `render`), so every case sends the same
query text with different literals. Read back as `declare query_parameters(...)` plus values, the
text repeats, its translation can be cached, and DuckDB binds the values instead of planning
them as literals. Only the literal forms the renderer writes are read (a string with its four
escapes, a long, a real, a bool, `datetime(...Z)`, a flat `dynamic([...])`); anything else ends
the run of lets, and a query without such lets is its own template.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from workflows.timestamps import parse_iso

_LET = re.compile(r"\s*let\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
_END = re.compile(r"\s*;")
_STRING = re.compile(r'"(?P<body>(?:[^"\\\r\n]|\\[\\"nrt])*)"')
_ESCAPE = re.compile(r"\\([\\\"nrt])")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_REAL = re.compile(r"-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+)(?![\w.])")
_LONG = re.compile(r"-?\d+(?![\w.])")
_BOOL = re.compile(r"(?P<value>true|false)(?!\w)")
_DATETIME = re.compile(r"datetime\((?P<value>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)\)")
_ITEMS_START, _ITEMS_END, _COMMA = re.compile(r"dynamic\(\[\s*"), re.compile(r"\s*\]\)"), re.compile(r"\s*,\s*")


def as_parameters(query: str) -> tuple[str, dict[str, Any]]:
    """(template, values): the leading lets as one `declare query_parameters(...)` statement, the
    newlines they took kept so the rest keeps its line numbers; (query, {}) when there are none."""
    declared: list[str] = []
    values: dict[str, Any] = {}
    at = 0
    while (let := _LET.match(query, at)) and let["name"] not in values:
        read = _literal(query, let.end())
        end = _END.match(query, read[2]) if read else None
        if read is None or end is None:
            break
        kind, value, _ = read
        declared.append(f"{let['name']}:{kind}")
        values[let["name"]] = value
        at = end.end()
    if not values:
        return query, {}
    lines = "\n" * query.count("\n", 0, at)
    return f"declare query_parameters({', '.join(declared)});{lines}{query[at:]}", values


def _literal(text: str, at: int) -> tuple[str, Any, int] | None:
    """(KQL type, Python value, end) of the literal at `at`, or None."""
    if match := _STRING.match(text, at):
        return "string", _ESCAPE.sub(lambda m: _UNESCAPED[m[1]], match["body"]), match.end()
    if match := _DATETIME.match(text, at):
        when: datetime | None = parse_iso(match["value"])
        return ("datetime", when, match.end()) if when is not None else None
    if match := _REAL.match(text, at):
        return "real", float(match[0]), match.end()
    if match := _LONG.match(text, at):
        return "long", int(match[0]), match.end()
    if match := _BOOL.match(text, at):
        return "bool", match["value"] == "true", match.end()
    if match := _ITEMS_START.match(text, at):
        return _items(text, match.end())
    return None


def _items(text: str, at: int) -> tuple[str, Any, int] | None:
    items: list[Any] = []
    while not (end := _ITEMS_END.match(text, at)):
        if items:
            comma = _COMMA.match(text, at)
            if comma is None:
                return None
            at = comma.end()
        item = _literal(text, at)
        if item is None or item[0] in ("datetime", "dynamic"):
            return None
        items.append(item[1])
        at = item[2]
    return "dynamic", items, end.end()
