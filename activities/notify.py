"""Approval requests, reminders, escalations and expiries: a structured log line and chat cards.

Cards (`activities/cards.py`) go to the Teams and Slack incoming webhooks of `[notify]`;
escalations go to the on-call webhooks. Webhook URLs are secrets: they live in the worker's
settings, never in the workflow input or history, and an error names the chat and status only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from ssl import SSLContext
from typing import Any

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import cards
from activities.clients import api_failure
from config.settings import NotifySettings
from workflows.types import Notification

log = structlog.get_logger("quell.notify")

TIMEOUT = httpx.Timeout(10.0)
MESSAGES: dict[str, Callable[[Notification, str | None], dict[str, Any]]] = {
    "teams": cards.teams_message,
    "slack": cards.slack_message,
}


class NotifyActivities:
    def __init__(self, notify: NotifySettings) -> None:
        self._notify = notify

    @cached_property
    def _tls(self) -> SSLContext:
        """One TLS context for every card: building one loads the CA bundle (about 50 ms of CPU,
        which a client per card had spent on every notification)."""
        return httpx.create_ssl_context()

    @activity.defn(name="notify.send")
    async def send(self, note: Notification) -> None:
        """Post the card to every configured chat; a chat that fails fails the activity (after the
        others were tried), so Temporal retries it (a retry may repeat a card in another chat)."""
        log.info("approval notification", case=note.case_id, kind=note.kind, actions=note.action_ids, text=note.text)
        targets = self._notify.targets(escalation=note.kind == "escalation")
        if not targets:
            return
        failures: list[ApplicationError] = []
        async with httpx.AsyncClient(timeout=TIMEOUT, verify=self._tls) as http:
            for chat, url in targets.items():
                message = MESSAGES[chat](note, self._notify.approval_url)
                try:
                    response = await http.post(url.get_secret_value(), json=message)
                except httpx.HTTPError as error:
                    # The exception's text may quote the URL: name the chat and the error's kind only.
                    failures.append(ApplicationError(f"{chat} webhook unreachable ({type(error).__name__})",
                                                     type="NotifyUnreachable"))
                    continue
                if response.status_code >= 400:
                    failures.append(api_failure(f"Notify {chat} webhook", response.status_code,
                                                response.reason_phrase, response.headers))
        if failures:
            raise ApplicationError(
                "; ".join(str(f) for f in failures)[:500],
                type=failures[0].type,
                non_retryable=all(f.non_retryable for f in failures),
            )

    def all(self) -> list:
        return [self.send]
