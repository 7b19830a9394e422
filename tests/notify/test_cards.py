"""Approval cards: what `notify.send` posts to Teams and Slack webhooks (a local receiver), checked
against the Adaptive Card 1.5 and Block Kit schemas in tests/notify/schemas."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest
from pydantic import SecretStr, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from config.settings import NotifySettings
from tests.notify.receiver import webhook_receiver
from workflows.types import Notification, NotifiedAction

SCHEMAS = Path(__file__).parent / "schemas"
ADAPTIVE_CARD = json.loads((SCHEMAS / "adaptive-card-1.5.subset.json").read_text())
BLOCK_KIT = json.loads((SCHEMAS / "slack-block-kit.subset.json").read_text())
CASE = "connector-case/11111111-2222-3333-4444-555555555555/connector/contoso-hybrid"
PAGE = "https://soc.contoso.com/quell/approve?case={case_id}&action={action_id}"


def note(kind: str = "approval_requested") -> Notification:
    return Notification(
        case_id=CASE,
        kind=kind,
        text=f"quell case {CASE}: approval needed for a1 disable_connector Contoso Hybrid",
        action_ids=["a1", "a2"],
        tenant_id="11111111-2222-3333-4444-555555555555",
        actions=[
            NotifiedAction(id="a1", kind="disable_connector", target="Contoso Hybrid",
                           reason="contain: the connector relays spam <since Tuesday> & more", policy="approve"),
            NotifiedAction(id="a2", kind="remove_connector", target="Contoso Hybrid",
                           reason="eradicate: created by an unexpected admin", policy="two_person"),
        ],
        plan_hash="0123456789ab",
        verdict="true_positive",
        findings=["Contoso Hybrid sent 5000 messages in an hour", "exadmin@contoso.com signed in after a burst"],
        expires_at=datetime(2026, 11, 20, 18, 0, tzinfo=timezone.utc),
    )


def settings(base: str, **extra: str) -> NotifySettings:
    return NotifySettings(teams_webhook=SecretStr(f"{base}/teams/T0KEN"), slack_webhook=SecretStr(f"{base}/slack/T0KEN"),
                          **extra)


def card_of(message: dict) -> dict:
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["version"] == "1.5"
    jsonschema.validate(card, ADAPTIVE_CARD)
    return card


def texts(card: dict) -> str:
    return json.dumps(card)


async def test_an_approval_request_posts_a_card_to_teams_and_slack_with_buttons_to_the_approval_page():
    with webhook_receiver() as hook:
        await ActivityEnvironment().run(NotifyActivities(settings(hook.base_url, approval_url=PAGE)).send, note())
    (teams,) = hook.bodies("/teams/T0KEN")
    (slack,) = hook.bodies("/slack/T0KEN")
    card = card_of(teams)
    jsonschema.validate(slack, BLOCK_KIT)
    expected_links = {PAGE.format(case_id=quote(CASE, safe=""), action_id=a) for a in ("a1", "a2")}
    buttons = [a for e in card["body"] if e["type"] == "ActionSet" for a in e["actions"]]
    assert {b["url"] for b in buttons} == expected_links
    slack_buttons = [b["accessory"] for b in slack["blocks"] if "accessory" in b]
    assert {b["url"] for b in slack_buttons} == expected_links
    for payload in (texts(card), json.dumps(slack)):
        for wanted in ("a1 disable_connector Contoso Hybrid", "a2 remove_connector Contoso Hybrid (two approvers)",
                       "0123456789ab", "true_positive", "sent 5000 messages", "eradicate: created by"):
            assert wanted in payload
        assert "T0KEN" not in payload  # the webhook URL is a secret: never on the card
    assert "spam &lt;since Tuesday&gt; &amp; more" in json.dumps(slack)  # Slack's mrkdwn escaping
    assert slack["text"] == note().text


async def test_without_an_approval_page_a_card_names_the_approve_command_and_has_no_button():
    with webhook_receiver() as hook:
        await ActivityEnvironment().run(NotifyActivities(settings(hook.base_url)).send, note())
    card = card_of(hook.bodies("/teams/T0KEN")[0])
    slack = hook.bodies("/slack/T0KEN")[0]
    jsonschema.validate(slack, BLOCK_KIT)
    assert not [e for e in card["body"] if e["type"] == "ActionSet"]
    assert not [b for b in slack["blocks"] if "accessory" in b]
    command = f"quell approve '{CASE}' a1 --as <you> --plan 0123456789ab"
    assert command in texts(card)
    assert command.replace("<", "&lt;").replace(">", "&gt;") in json.dumps(slack)


@pytest.mark.parametrize(("kind", "oncall"), [("reminder", False), ("escalation", True), ("expired", False)])
async def test_escalations_go_to_the_on_call_webhooks_and_the_rest_to_the_regular_ones(kind, oncall):
    with webhook_receiver() as hook:
        notify = settings(hook.base_url, approval_url=PAGE,
                          oncall_teams_webhook=f"{hook.base_url}/oncall-teams", oncall_slack_webhook=f"{hook.base_url}/oncall-slack")
        await ActivityEnvironment().run(NotifyActivities(notify).send, note(kind))
    paths = sorted(path for path, _ in hook.posts)
    assert paths == (["/oncall-slack", "/oncall-teams"] if oncall else ["/slack/T0KEN", "/teams/T0KEN"])
    for path, body in hook.posts:
        if "teams" in path:
            card_of(body)
        else:
            jsonschema.validate(body, BLOCK_KIT)
    if kind == "expired":  # nothing left to decide: no button
        assert "Action.OpenUrl" not in json.dumps(hook.posts)


async def test_an_escalation_without_an_on_call_webhook_goes_to_the_regular_ones():
    with webhook_receiver() as hook:
        await ActivityEnvironment().run(NotifyActivities(settings(hook.base_url)).send, note("escalation"))
    assert sorted(path for path, _ in hook.posts) == ["/slack/T0KEN", "/teams/T0KEN"]
    assert "ESCALATION" in texts(card_of(hook.bodies("/teams/T0KEN")[0]))


async def test_a_failing_webhook_fails_the_activity_without_its_url_after_trying_the_others():
    with webhook_receiver() as hook:
        notify = NotifySettings(teams_webhook=SecretStr(f"{hook.base_url}/broken/S3CRET"),
                                slack_webhook=SecretStr(f"{hook.base_url}/slack/T0KEN"))
        with pytest.raises(ApplicationError) as failed:
            await ActivityEnvironment().run(NotifyActivities(notify).send, note())
    assert "teams webhook answered 500" in str(failed.value)
    assert "S3CRET" not in str(failed.value) and not failed.value.non_retryable
    assert hook.bodies("/slack/T0KEN")  # Slack still got its card


async def test_a_card_from_a_history_written_before_cards_is_its_text():
    old = Notification(case_id=CASE, kind="reminder", text="Reminder, quell case x still waits", action_ids=["a1"])
    with webhook_receiver() as hook:
        await ActivityEnvironment().run(NotifyActivities(settings(hook.base_url)).send, old)
    assert card_of(hook.bodies("/teams/T0KEN")[0])["fallbackText"] == old.text
    jsonschema.validate(hook.bodies("/slack/T0KEN")[0], BLOCK_KIT)


def test_webhooks_must_be_https_and_the_approval_page_may_name_the_ids_only():
    with pytest.raises(ValidationError, match="https") as refused:
        NotifySettings(slack_webhook="http://hooks.example.com/services/S3CRET")
    assert "S3CRET" not in str(refused.value)
    with pytest.raises(ValidationError, match="case_id"):
        NotifySettings(approval_url="https://soc.contoso.com/{case_id}?token={token}")
    assert NotifySettings(approval_url=PAGE).approval_url == PAGE
