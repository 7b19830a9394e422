"""Approval reminders and escalations: a structured log line and, if configured, a chat webhook.

The webhook URL (Teams / Slack incoming webhook) is a secret: it lives in the worker's
settings, never in the workflow input or history.
"""

from __future__ import annotations

import httpx
import structlog
from pydantic import SecretStr
from temporalio import activity

from activities.clients import api_failure
from workflows.types import Notification

log = structlog.get_logger("quell.notify")


class NotifyActivities:
    def __init__(self, webhook_url: SecretStr | None) -> None:
        self._webhook_url = webhook_url

    @activity.defn(name="notify.send")
    async def send(self, note: Notification) -> None:
        log.info("approval notification", case=note.case_id, kind=note.kind,
                 actions=note.action_ids, text=note.text)
        if self._webhook_url is None:
            return
        async with httpx.AsyncClient(timeout=10) as http:
            # Teams and Slack incoming webhooks both accept {"text": ...}.
            response = await http.post(self._webhook_url.get_secret_value(), json={"text": note.text})
        if response.status_code >= 400:
            # The URL is a credential: the error names the status only.
            raise api_failure("Notify webhook", response.status_code, response.reason_phrase, response.headers)

    def all(self) -> list:
        return [self.send]
