"""Intake payload validation: what is accepted, and the reason for what is refused."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.alert_parsing import PayloadError, parse_alerts
from activities.cases import case_id


def parse_alert(body, tenant_id=None):
    [alert] = parse_alerts(body, tenant_id)
    return alert

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
    assert case_id(alert) == f"connector-case/{TENANT}/ip/198.51.100.23"


def test_alert_with_only_message_evidence_is_its_own_case():
    body = {**GRAPH_ALERT, "evidence": GRAPH_ALERT["evidence"][1:]}
    assert case_id(parse_alert(body, TENANT)) == f"connector-case/{TENANT}/alert/da637f1e2c3b4a5d6e7f80910"


def test_tenant_in_alert_wins_over_query_parameter():
    alert = parse_alert({**GRAPH_ALERT, "tenantId": "t-from-alert"}, tenant_id=TENANT)
    assert alert.tenant_id == "t-from-alert"


def test_generic_alert_naming_the_connector_keys_the_case_by_connector():
    alert = parse_alert({"tenant": TENANT, "alert_id": "x1", "connector": "Contoso Hybrid"})
    assert case_id(alert) == f"connector-case/{TENANT}/connector/contoso-hybrid"


def test_generic_alert_may_carry_only_the_connector_domain():
    alert = parse_alert({"tenant": TENANT, "alert_id": "x2", "connector_domain": "relay.contoso.com"})
    assert (alert.connector_domain, alert.connector_hint, alert.ip_addresses) == ("relay.contoso.com", None, [])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({"foo": 1}, "unrecognised alert shape"),
        ({**GRAPH_ALERT, "title": "Phish delivered"}, "not 'Suspicious connector activity'"),
        ({**GRAPH_ALERT, "evidence": []}, "no ipEvidence"),
        ({"id": "", "title": "Suspicious connector activity"}, "id"),
        ({"tenant": TENANT, "alert_id": "x"}, "'connector' or 'ip'"),
        ({"tenant": TENANT, "alert_id": "x", "ip": "1.2.3.4", "surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_malformed_alerts_are_refused_with_a_reason(body, reason):
    with pytest.raises(PayloadError, match=reason):
        parse_alert(body, tenant_id=TENANT)


def test_graph_alert_without_any_tenant_is_refused():
    with pytest.raises(PayloadError, match="tenantId"):
        parse_alert(GRAPH_ALERT)


def sentinel_incident(*titles: str) -> dict:
    """The body a Sentinel automation rule sends a playbook (incident trigger), trimmed."""
    return {
        "objectSchemaType": "Incident",
        "objectEventType": "Create",
        "workspaceId": "ws-1",
        "object": {
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/w"
                  "/providers/Microsoft.SecurityInsights/Incidents/inc-1",
            "name": "inc-1",
            "type": "Microsoft.SecurityInsights/Incidents",
            "properties": {
                "title": "Suspicious connector activity involving one user",
                "severity": "High",
                "incidentNumber": 42,
                "alerts": [
                    {"kind": "SecurityAlert", "properties": {
                        "alertDisplayName": title, "providerAlertId": f"da-{n}", "systemAlertId": f"sys-{n}",
                        "severity": "High", "timeGenerated": "2026-11-20T09:45:00Z"}}
                    for n, title in enumerate(titles)
                ],
                "relatedEntities": [
                    {"kind": "Ip", "properties": {"address": "198.51.100.23", "friendlyName": "198.51.100.23"}},
                    {"kind": "MailMessage", "properties": {"networkMessageId": "spam-0", "senderIP": "198.51.100.23",
                                                           "p1Sender": "bounce-0@qx-mailer.example",
                                                           "p2Sender": "billing@contoso.com"}},
                    {"kind": "Mailbox", "properties": {"mailboxPrimaryAddress": "billing@contoso.com"}},
                ],
            },
        },
    }


def test_sentinel_incident_with_several_alerts_yields_each_connector_alert():
    alerts = parse_alerts(
        sentinel_incident("Suspicious connector activity", "Impossible travel", "Suspicious connector activity"),
        tenant_id=TENANT,
    )
    assert [a.alert_id for a in alerts] == ["da-0", "da-2"]
    assert all(a.ip_addresses == ["198.51.100.23"] and a.source == "sentinel" for a in alerts)
    assert alerts[0].messages[0].p2_sender == "billing@contoso.com"


def test_sentinel_incident_without_connector_alert_is_refused():
    with pytest.raises(PayloadError, match="no 'Suspicious connector activity' alert"):
        parse_alerts(sentinel_incident("Impossible travel"), tenant_id=TENANT)


def test_defender_stream_records_are_joined_by_alert_id():
    body = {"records": [
        {"tenantId": TENANT, "category": "AdvancedHunting-AlertInfo",
         "properties": {"AlertId": "da-9", "Title": "Suspicious connector activity", "Severity": "High"}},
        {"tenantId": TENANT, "category": "AdvancedHunting-AlertEvidence",
         "properties": {"AlertId": "da-9", "EntityType": "Ip", "RemoteIP": "198.51.100.23"}},
        {"tenantId": TENANT, "category": "AdvancedHunting-AlertEvidence",
         "properties": {"AlertId": "da-9", "EntityType": "MailMessage", "NetworkMessageId": "spam-1"}},
        {"tenantId": TENANT, "category": "AdvancedHunting-AlertInfo",
         "properties": {"AlertId": "other", "Title": "Malware campaign detected"}},
    ]}
    [alert] = parse_alerts(body)
    assert alert.alert_id == "da-9" and alert.severity == "high"
    assert alert.ip_addresses == ["198.51.100.23"]
    assert alert.messages[0].network_message_id == "spam-1"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
STREAM = {"records": [
    {"tenantId": TENANT, "category": "AdvancedHunting-AlertInfo",
     "properties": {"AlertId": "da-9", "Title": "Suspicious connector activity", "Severity": "High"}},
    {"tenantId": TENANT, "category": "AdvancedHunting-AlertEvidence",
     "properties": {"AlertId": "da-9", "EntityType": "Ip", "RemoteIP": "198.51.100.23"}},
]}
SHAPES = [GRAPH_ALERT, sentinel_incident("Suspicious connector activity"), STREAM,
          {"tenant": TENANT, "alert_id": "x", "ip": "1.2.3.4"}, {"type": "Microsoft.SecurityInsights/Incidents"}]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated_alerts(draw):
    """A valid payload of each shape with one value, at any depth, replaced by any JSON value."""
    shape = draw(st.sampled_from(SHAPES))
    return _replaced(shape, draw(st.sampled_from(list(_paths(shape)))), draw(JSON))


@given(body=JSON | mutated_alerts(), tenant=st.none() | st.just(TENANT))
@settings(max_examples=400, deadline=None, derandomize=True, database=None)
def test_any_json_is_parsed_or_refused_with_a_payload_error(body, tenant):
    """Nothing a sender can put in a JSON body makes parsing fail in another way (a 500 at intake)."""
    try:
        alerts = parse_alerts(body, tenant)
    except PayloadError:
        return
    assert alerts and all(isinstance(a.alert_id, str) and isinstance(a.tenant_id, str) for a in alerts)
