"""Activities of the alerts_v2 poller: list a tenant's new connector alerts, and open their cases.

Listing filters on the server by service source and creation time (`$filter`), oldest first
(`$orderby`, `$top` a page), and on the client by title (the policy's alerts share Defender for
Office 365 with many others). Every alert goes through `activities.alert_parsing.from_graph_alert`
and `activities.cases.accept_alert`, the webhook's own path, so a polled alert and a posted one
meet in the same case.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import cases
from activities.alert_parsing import POLICY_TITLE, PayloadError, from_graph_alert
from activities.clients import ClientPool
from config.settings import Settings
from workflows.poller import LIST_ACTIVITY, OPEN_ACTIVITY, advance
from workflows.timestamps import parse_timestamp
from workflows.types import AlertBatch, AlertRef, ListNewAlerts, OpenedCase, SkippedAlert

SERVICE_SOURCE = "microsoftDefenderForOffice365"


def graph_datetime(value: datetime) -> str:
    """An OData DateTimeOffset literal (unquoted), UTC, microseconds kept."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alerts_filter(after: datetime) -> str:
    return f"serviceSource eq '{SERVICE_SOURCE}' and createdDateTime ge {graph_datetime(after)}"


def alerts_path(after: datetime, page_size: int) -> str:
    """The first page's path: oldest first, `page_size` alerts a page. Spaces as %20, not the `+`
    form encoding gives them: Graph's OData parser wants %20."""
    query = quote(alerts_filter(after), safe="':")
    return f"/security/alerts_v2?$filter={query}&$orderby=createdDateTime%20asc&$top={page_size}"


class AlertActivities:
    def __init__(self, settings: Settings, pool: ClientPool, client: Client) -> None:
        self._settings = settings
        self._pool = pool
        self._client = client

    @activity.defn(name=LIST_ACTIVITY)
    async def list_new(self, request: ListNewAlerts) -> AlertBatch:
        """At most `max_pages` pages, oldest first; the cursor moves past the last alert read only,
        so what a pass leaves unread is the next pass's first page."""
        graph = self._pool.for_tenant(request.tenant_id).graph_http
        cursor = request.cursor
        after = cursor.since if cursor.more else cursor.since - request.overlap
        listed: list[dict[str, Any]] = []
        next_link: str | None = alerts_path(after, request.page_size)
        for _ in range(request.max_pages):
            if not next_link:
                break
            page: Any = await graph.request("GET", next_link)
            listed.extend(v for v in page.get("value", []) if isinstance(v, dict))
            next_link = page.get("@odata.nextLink")
        alerts: list[tuple[datetime, AlertRef]] = []
        skipped: list[SkippedAlert] = []
        fed: dict[str, datetime] = {}
        for raw in listed:
            alert_id, created = str(raw.get("id", "")), parse_timestamp(raw.get("createdDateTime"))
            if not alert_id or created is None:
                skipped.append(SkippedAlert(alert_id=alert_id or "?", reason="no id or createdDateTime"))
                continue
            if alert_id in cursor.seen:
                continue  # fed by an earlier pass (the overlap window re-reads it)
            fed[alert_id] = created
            if str(raw.get("title", "")).strip().casefold() != POLICY_TITLE:
                continue  # another Defender for Office 365 alert: not ours, not worth a line
            if raw.get("tenantId") not in (None, request.tenant_id):
                # Never let one tenant's poller open a case in another tenant.
                skipped.append(SkippedAlert(alert_id=alert_id, reason="alert names another tenant"))
                continue
            try:
                alerts.append((created, from_graph_alert(raw, request.tenant_id, source="poll")))
            except PayloadError as unusable:
                skipped.append(SkippedAlert(alert_id=alert_id, reason=str(unusable)))
        alerts.sort(key=lambda pair: pair[0])
        activity.logger.info("alerts listed", extra={"listed": len(listed), "new": len(alerts)})
        return AlertBatch(
            alerts=[a for _, a in alerts],
            skipped=skipped,
            cursor=advance(cursor, fed, request.overlap, more=bool(next_link)),
        )

    @activity.defn(name=OPEN_ACTIVITY)
    async def open_case(self, alert: AlertRef) -> OpenedCase:
        if alert.tenant_id not in {t.tenant_id for t in self._settings.tenants}:
            raise ApplicationError(f"tenant {alert.tenant_id} is not configured", type="UnknownTenant", non_retryable=True)
        # Cases go to the task queue this worker serves (the queue the poller runs on).
        return await cases.accept_alert(self._client, self._settings, alert, activity.info().task_queue)

    def all(self) -> list[Callable[..., Any]]:
        return [self.list_new, self.open_case]
