"""Action parameters are typed when the plan is made: one model per kind, checked against the kind."""

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError
from temporalio import activity

from activities.remediation import BY_KIND, RemediationActivities
from workflows.types import (
    ActionKind,
    ClassifyParams,
    ConnectorParams,
    PlannedAction,
    RevertParams,
    UserParams,
)

GUID = "9b0e4c50-0000-4000-8000-000000000010"


HISTORIES = Path(__file__).parents[1] / "replay" / "histories"


def planned(kind: ActionKind, params: Any) -> PlannedAction:
    return PlannedAction(id="a1", kind=kind, stage="contain", reason="r", policy="approve", params=params)


def test_params_of_another_kind_are_refused():
    with pytest.raises(ValidationError, match="disable_connector cannot take the parameters of revoke_sessions"):
        planned("disable_connector", UserParams(kind="revoke_sessions", user="helpdesk.op@contoso.com"))
    with pytest.raises(ValidationError, match="remove_connector cannot take"):
        planned("remove_connector", ConnectorParams(kind="disable_connector", identity=GUID, direction="inbound"))


def test_serialised_params_are_validated_as_the_actions_kind():
    with pytest.raises(ValidationError, match="identity"):
        planned("disable_connector", {"user": "helpdesk.op@contoso.com"})
    with pytest.raises(ValidationError, match="restore"):
        planned("revert_connector_change", {"identity": GUID, "direction": "inbound"})

    action = planned("revert_connector_change", {"identity": GUID, "direction": "inbound", "restore": {"X": True}})
    assert action.params == RevertParams(identity=GUID, direction="inbound", restore={"X": True})


def test_the_wire_shape_names_the_kind_once_and_decodes_back():
    action = planned("classify_alert", ClassifyParams(alert_id="da1", status="inProgress"))
    wire = action.model_dump(mode="json")

    assert wire["params"] == {"alert_id": "da1", "status": "inProgress", "classification": None, "determination": None}
    assert PlannedAction.model_validate(wire) == action
    assert PlannedAction.model_validate_json(action.model_dump_json()) == action


def test_every_action_kind_has_one_activity_under_its_registered_name():
    assert set(BY_KIND) == set(get_args(ActionKind))
    names = {}
    for kind, method in BY_KIND.items():
        assert method.__qualname__ == f"{RemediationActivities.__name__}.{kind}"
        names[kind] = activity._Definition.must_from_callable(method).name
    assert names == {kind: "action." + kind.replace("_", "-") for kind in BY_KIND}

    # Stored histories schedule activities by these names: every one they use is still registered.
    stored = {
        event["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for path in HISTORIES.glob("*.json")
        for event in json.loads(path.read_text())["events"]
        if "activityTaskScheduledEventAttributes" in event
    }
    batched = activity._Definition.must_from_callable(RemediationActivities.alert_write_backs).name
    assert batched == "action.alert-write-backs"  # alert write-backs for many alerts (patch bounded-history)
    assert {n for n in stored if n.startswith("action.")} <= {*names.values(), batched}
