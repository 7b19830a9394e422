"""Approval notifications as chat cards: a Microsoft Teams Adaptive Card (1.5) and a Slack Block Kit message.

A card shows what waits (action, target, reason), why (verdict and findings) and the plan hash an
approval must name. Its buttons open `notify.approval_url` for one case and action: the page signs
the approver in and decides with their own token. Nothing on a card grants anything: no token, no
signed link, and the webhook URL itself never appears.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from workflows.types import Notification, NotifiedAction

MAX_FINDINGS = 10
TITLES = {
    "approval_requested": "Approval needed",
    "reminder": "Reminder: approval still needed",
    "escalation": "ESCALATION: approval overdue",
    "expired": "Approval expired",
}
TEAMS_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


def approval_link(template: str | None, case_id: str, action_id: str) -> str | None:
    """The page for one action: the template with the ids URL-quoted (a case id holds slashes)."""
    if template is None:
        return None
    return template.format(case_id=quote(case_id, safe=""), action_id=quote(action_id, safe=""))


def approve_command(note: Notification, action: NotifiedAction) -> str:
    plan = f" --plan {note.plan_hash}" if note.plan_hash else ""
    return f"quell approve '{note.case_id}' {action.id} --as <you>{plan}"


def _title(note: Notification) -> str:
    return f"{TITLES[note.kind]}: quell case {note.case_id}"


def _facts(note: Notification) -> list[tuple[str, str]]:
    facts = [("Case", note.case_id)]
    if note.tenant_id:
        facts.append(("Tenant", note.tenant_id))
    if note.verdict:
        facts.append(("Verdict", note.verdict))
    if note.plan_hash:
        facts.append(("Plan hash", note.plan_hash))
    if note.expires_at:
        facts.append(("Expires", f"{note.expires_at:%Y-%m-%d %H:%M} UTC"))
    return facts


def _heading(action: NotifiedAction) -> str:
    target = f" {action.target}" if action.target else ""
    two = " (two approvers)" if action.policy == "two_person" else ""
    return f"{action.id} {action.kind}{target}{two}"


# --------------------------------------------------------------------------- Teams


def teams_message(note: Notification, approval_url: str | None) -> dict[str, Any]:
    """What a Teams incoming webhook (Workflows or connector) takes: a message with one Adaptive Card."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _title(note), "size": "large", "weight": "bolder", "wrap": True,
         "color": "attention" if note.kind == "escalation" else "default"},
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in _facts(note)]},
    ]
    for action in note.actions:
        body.append({"type": "TextBlock", "text": _heading(action), "weight": "bolder", "wrap": True,
                     "separator": True, "spacing": "medium"})
        if action.reason:
            body.append({"type": "TextBlock", "text": action.reason, "wrap": True})
        link = approval_link(approval_url, note.case_id, action.id) if note.kind != "expired" else None
        if link:
            body.append({"type": "ActionSet", "actions": [
                {"type": "Action.OpenUrl", "title": f"Review and decide {action.id}", "url": link, "style": "positive"},
            ]})
        elif note.kind != "expired":
            body.append({"type": "TextBlock", "text": approve_command(note, action), "fontType": "monospace",
                         "wrap": True, "isSubtle": True})
    if note.findings:
        body.append({"type": "TextBlock", "text": "Findings", "weight": "bolder", "separator": True})
        body.extend({"type": "TextBlock", "text": f"- {summary}", "wrap": True, "spacing": "small"}
                    for summary in note.findings[:MAX_FINDINGS])
    card = {"$schema": ADAPTIVE_CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.5", "fallbackText": note.text,
            "body": body}
    return {"type": "message", "attachments": [{"contentType": TEAMS_CARD, "contentUrl": None, "content": card}]}


# --------------------------------------------------------------------------- Slack


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(kind: str, text: str, limit: int) -> dict[str, str]:
    value = _mrkdwn(text) if kind == "mrkdwn" else text
    return {"type": kind, "text": value if len(value) <= limit else value[: limit - 1] + "…"}


def slack_message(note: Notification, approval_url: str | None) -> dict[str, Any]:
    """What a Slack incoming webhook takes: `text` (notifications, fallback) and Block Kit `blocks`."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _text("plain_text", _title(note), 150)},
        {"type": "section", "fields": [_text("mrkdwn", f"*{t}*\n{v}", 2000) for t, v in _facts(note)]},
    ]
    for action in note.actions:
        lines = [f"*{_heading(action)}*"]
        if action.reason:
            lines.append(action.reason)
        link = approval_link(approval_url, note.case_id, action.id) if note.kind != "expired" else None
        if link is None and note.kind != "expired":
            lines.append(f"`{approve_command(note, action)}`")
        section: dict[str, Any] = {"type": "section", "text": _text("mrkdwn", "\n".join(lines), 3000)}
        if link:
            section["accessory"] = {"type": "button", "text": _text("plain_text", f"Review {action.id}", 75),
                                    "url": link, "action_id": f"review-{action.id}", "style": "primary"}
        blocks += [{"type": "divider"}, section]
    if note.findings:
        listed = "\n".join(f"• {summary}" for summary in note.findings[:MAX_FINDINGS])
        blocks += [{"type": "divider"}, {"type": "section", "text": _text("mrkdwn", f"*Findings*\n{listed}", 3000)}]
    return {"text": note.text, "blocks": blocks}
