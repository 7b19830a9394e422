"""Typed `params` of each planned action: the contract between the planner and the action activities.

The planner builds these and stores `model_dump(mode="json")` in `PlannedAction.params` (so the
plan hash covers them and approvers see them); each `action.*` activity validates its params
back into the same model before touching the tenant.
"""

from __future__ import annotations

from typing import Any, Literal

from workflows.types import Direction, Frozen


class ConnectorParams(Frozen):
    """disable_connector, remove_connector: the connector by its immutable Guid."""

    identity: str
    """The connector's Guid (a name can be changed by the attacker; the Guid cannot)."""
    direction: Direction


class RevertParams(ConnectorParams):
    """revert_connector_change: Set-*Connector with each property's last authorised value."""

    restore: dict[str, Any]
    """Property -> value to set (lists and booleans already normalised from the audit log)."""


class UnblockConnectorParams(Frozen):
    connector_id: str
    """The Guid Get-BlockedConnector reports as ConnectorId."""


class UnblockSenderParams(Frozen):
    sender_address: str


class UserParams(Frozen):
    """reset_admin_password, revoke_sessions."""

    user: str
    """Object id when evidence had it, else the userPrincipalName (Graph accepts both)."""


class MfaParams(Frozen):
    report_only: bool = True
    """Create the policy as `enabledForReportingButNotEnforced` so it cannot lock admins out."""


AlertStatusValue = Literal["new", "inProgress", "resolved"]
Classification = Literal["truePositive", "falsePositive", "informationalExpectedActivity"]
Determination = Literal[
    "compromisedAccount",
    "malware",
    "phishing",
    "other",
    "confirmedActivity",
    "lineOfBusinessApplication",
    "notMalicious",
]


class ClassifyParams(Frozen):
    alert_id: str
    status: AlertStatusValue
    classification: Classification | None = None
    """None leaves the alert's classification as it is (needs_review: still `unknown`)."""
    determination: Determination | None = None


class CommentParams(Frozen):
    alert_id: str
    comment: str
