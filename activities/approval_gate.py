"""The worker's side of signed approvals: the trust a case reads, and the check every action runs.

Both read the approval settings through a loader called on every use (`config.settings.
current_approval` in `quell worker`: the config file and environment as they are now), so an
approver removed from the config stops counting on running cases without a restart.

`authorise` is the hard gate: whatever the workflow's input, state or history says, an action
activity touches the tenant only when the worker's own settings make its kind `auto`, or the
decisions it was given hold enough valid signatures for this case, this action and the plan
they name (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.settings import ApprovalSettings
from workflows import approvals
from workflows.types import ActionInput, Trust

log = structlog.get_logger("quell.approvals")

ApprovalLoader = Callable[[], ApprovalSettings]


class TrustActivities:
    def __init__(self, approval: ApprovalLoader) -> None:
        self._approval = approval

    @activity.defn(name="approvals.trust")
    async def trust(self) -> Trust:
        """Accounts, public keys and policy from the worker's settings (public keys only)."""
        return self._approval().trust()

    def all(self) -> list[Callable[..., Any]]:
        return [self.trust]


def authorise(inp: ActionInput, approval: ApprovalSettings) -> None:
    """Raise a non-retryable `NotApproved` unless the worker's settings let this action run."""
    problem = approvals.authorisation_problem(inp, approval.trust(), datetime.now(timezone.utc), approval.valid_for)
    if problem is None:
        return
    log.warning("action refused", case=inp.case_id, action=inp.action.id, kind=inp.action.kind, reason=problem)
    raise ApplicationError(f"refused by the worker's approval check: {problem}", type="NotApproved", non_retryable=True)
