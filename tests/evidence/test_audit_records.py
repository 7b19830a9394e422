"""Audit records as every source returns them become the entries grading reads; failed ones
count for nothing (docs/scenarios.md rule 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.evidence import audit_entries

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", ["False", "false", "Failed", "FAILURE"])
def test_failed_records_are_dropped(status):
    connectors, others = audit_entries([
        (NOW, "Set-InboundConnector", "a@contoso.com", {"ObjectId": "Hybrid", "ResultStatus": status,
                                                         "Parameters": [{"Name": "SenderIPAddresses", "Value": "1.2.3.4"}]}),
        (NOW, "New-AcceptedDomain", "a@contoso.com", {"ObjectId": "evil.example", "ResultStatus": status}),
    ])
    assert connectors == [] and others == []


def test_records_are_split_oldest_first_with_their_object_and_modified_properties():
    connectors, others = audit_entries([
        (NOW, "Add member to role.", "a@contoso.com", {
            "ObjectId": "b@contoso.com", "ResultStatus": "Success",
            "ModifiedProperties": [{"Name": "Role.DisplayName", "NewValue": '"Exchange Administrator"'}]}),
        (NOW - timedelta(hours=1), "Remove-OutboundConnector", "a@contoso.com", {
            "ObjectId": "Old", "ResultStatus": "True", "Parameters": [{"Name": "Identity", "Value": "Old"}]}),
    ])
    assert [(c.operation, c.object_id) for c in connectors] == [("Remove-OutboundConnector", "Old")]
    assert [(o.operation, o.object_id, o.modified) for o in others] == [
        ("Add member to role.", "b@contoso.com", {"Role.DisplayName": '"Exchange Administrator"'})]
