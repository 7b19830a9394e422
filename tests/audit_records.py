"""Audit records for grading and planning tests, at hours before the case's `NOW`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from workflows.types import AuditEntry, ConnectorChange

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
HELPDESK, EXADMIN = "helpdesk.op@contoso.com", "exadmin@contoso.com"


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def connector_change(hours: float, operation: str, name: str, actor: str = HELPDESK, **parameters: Any) -> ConnectorChange:
    return ConnectorChange(at=ago(hours), operation=operation, actor=actor, object_id=name,
                           parameters={"Identity": name, **parameters})


def record(hours: float, operation: str, actor: str = HELPDESK, object_id: str | None = None,
           modified: dict[str, Any] | None = None, **parameters: Any) -> AuditEntry:
    return AuditEntry(at=ago(hours), operation=operation, actor=actor, object_id=object_id,
                      parameters=parameters, modified=modified or {})
