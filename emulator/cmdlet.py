"""What every emulated cmdlet is: its parameters, how it runs, and the call it runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.state import AuditSession, TenantData

ARGUMENT = "System.Management.Automation.ParameterBindingArgumentTransformationException"

Params = dict[str, Any]
TraceRow = tuple[datetime, dict[str, Any]]
"""A message trace row (without the call's Organization and window) and when it was received."""


@dataclass
class Call:
    """One cmdlet run: the tenant it may change, who runs it, and its bound parameters."""

    tenant: TenantData
    actor: str
    client_ip: str
    params: Params
    warnings: list[str]
    message_trace: list[TraceRow]
    """Message trace's rows, newest first (made once from the scenario's EmailEvents)."""
    organization: str
    audit_sessions: dict[str, AuditSession]
    continued: bool
    """The request reads a later InvokeCommand page (`$skiptoken`) of an answer already given."""


@dataclass(frozen=True)
class Cmdlet:
    name: str
    params: dict[str, str]  # parameter name -> kind: string, bool, switch, multi, datetime, size
    mandatory: tuple[str, ...]
    run: Callable[[Call], list[dict[str, Any]]]
