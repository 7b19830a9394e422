"""structlog JSON logs for every quell process, with the case id bound from Temporal context.

Both structlog loggers and the stdlib loggers Temporal uses (`workflow.logger`,
`activity.logger`) end up as one JSON line each. Lines from workflow code replaying history
are dropped so a replay does not repeat the audit trail.

Secrets never print (`_redact`, the last step before rendering): a value under a key that names
a secret, at any depth of mappings and lists (a header list's `("Authorization", ...)` pair too),
and inside text — messages, exception traces, URLs — bearer tokens, JWTs, HMAC signatures,
`client_secret=`-style assignments, URL credentials and secret query parameters (`sig=`, `code=`, ...).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from temporalio import activity, workflow

REDACTED = "[redacted]"
SECRET_KEY_WORDS = (
    "password", "secret", "token", "authorization", "client_assertion", "signature", "api_key",
    "apikey", "cookie", "webhook", "credential",
)
_QUERY_SECRETS = (
    "sig", "signature", "code", "token", "key", "secret", "password", "client_secret", "client_assertion",
    "access_token", "refresh_token", "id_token", "api_key", "apikey",
)
_TEXT_SECRETS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\bsha256=[0-9a-f]{16,}"), f"sha256={REDACTED}"),
    (re.compile(r"(?i)([?&](?:" + "|".join(_QUERY_SECRETS) + r")=)[^&#\s\"']*"), rf"\1{REDACTED}"),
    (
        re.compile(
            r"(?i)\b(client_secret|client_assertion|password|passwd|access_token|refresh_token|id_token"
            r"|api_key|apikey)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',;}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@"), rf"\1{REDACTED}@"),
]


def _temporal_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if activity.in_activity():
        info = activity.info()
        event.setdefault("case", info.workflow_id)
        event.setdefault("activity", info.activity_type)
        event.setdefault("attempt", info.attempt)
    elif workflow.in_workflow():
        if workflow.unsafe.is_replaying_history_events():
            raise structlog.DropEvent
        event.setdefault("case", workflow.info().workflow_id)
    return event


def _names_secret(key: object) -> bool:
    return isinstance(key, str) and any(word in key.lower() for word in SECRET_KEY_WORDS)


def scrub_text(text: str) -> str:
    for pattern, replacement in _TEXT_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _names_secret(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) == 2 and _names_secret(items[0]):  # a ("Authorization", "...") header pair
            return [items[0], REDACTED]
        return [_scrub(item) for item in items]
    return scrub_text(str(value))


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Defence in depth: no secret prints, by its key or by its shape (module docstring)."""
    return {key: REDACTED if _names_secret(key) else _scrub(value) for key, value in event.items()}


def configure_logging(level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _temporal_context,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                structlog.processors.JSONRenderer(default=str),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "azure", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
