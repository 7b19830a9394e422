"""Intake payload validation: what is accepted, and the reason for what is refused."""

import pytest

from workers.alert_payloads import PayloadError, case_id, parse_alert

TENANT = "11111111-2222-3333-4444-555555555555"

GRAPH_ALERT = {
    "id": "da637f1e2c3b4a5d6e7f80910",
    "title": "Suspicious connector activity",
    "severity": "high",
    "createdDateTime": "2026-11-20T09:45:00Z",
    "evidence": [
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "198.51.100.23"},
        {
            "@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
            "networkMessageId": "spam-0",
            "senderIp": "198.51.100.23",
            "p1Sender": {"emailAddress": "bounce-0@qx-mailer.example", "domainName": "qx-mailer.example"},
            "p2Sender": {"emailAddress": "billing@contoso.com", "domainName": "contoso.com"},
        },
    ],
}


def test_graph_alert_is_normalised_with_ip_and_message_evidence():
    alert = parse_alert(GRAPH_ALERT, tenant_id=TENANT)
    assert alert.tenant_id == TENANT
    assert alert.ip_addresses == ["198.51.100.23"]
    assert alert.messages[0].p1_sender == "bounce-0@qx-mailer.example"
    assert alert.messages[0].p2_sender == "billing@contoso.com"
    assert case_id(alert) == f"connector-case/{TENANT}/alert/da637f1e2c3b4a5d6e7f80910"


def test_tenant_in_alert_wins_over_query_parameter():
    alert = parse_alert({**GRAPH_ALERT, "tenantId": "t-from-alert"}, tenant_id=TENANT)
    assert alert.tenant_id == "t-from-alert"


def test_generic_alert_naming_the_connector_keys_the_case_by_connector():
    alert = parse_alert({"tenant": TENANT, "alert_id": "x1", "connector": "Contoso Hybrid"})
    assert case_id(alert) == f"connector-case/{TENANT}/connector/contoso-hybrid"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({"foo": 1}, "unrecognised alert shape"),
        ({**GRAPH_ALERT, "title": "Phish delivered"}, "not 'Suspicious connector activity'"),
        ({**GRAPH_ALERT, "evidence": []}, "no ipEvidence"),
        ({"id": "", "title": "Suspicious connector activity"}, "id"),
        ({"tenant": TENANT, "alert_id": "x"}, "'connector' or 'ip'"),
        ({"tenant": TENANT, "alert_id": "x", "ip": "1.2.3.4", "extra": 1}, "extra"),
    ],
)
def test_malformed_alerts_are_refused_with_a_reason(body, reason):
    with pytest.raises(PayloadError, match=reason):
        parse_alert(body, tenant_id=TENANT)


def test_graph_alert_without_any_tenant_is_refused():
    with pytest.raises(PayloadError, match="tenantId"):
        parse_alert(GRAPH_ALERT)
