"""structlog JSON logs for every quell process, with the case id bound from Temporal context.

Both structlog loggers and the stdlib loggers Temporal uses (`workflow.logger`,
`activity.logger`) end up as one JSON line each. Lines from workflow code replaying history
are dropped so a replay does not repeat the audit trail.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from temporalio import activity, workflow

REDACTED_KEYS = ("password", "secret", "token", "authorization", "client_assertion")


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


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Defence in depth: a key that names a secret never prints its value."""
    for key in list(event):
        if any(word in key.lower() for word in REDACTED_KEYS):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _temporal_context,
        _redact,
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
                structlog.processors.JSONRenderer(default=str),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "azure", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
