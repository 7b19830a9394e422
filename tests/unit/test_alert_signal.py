"""The `alert_received` signal across releases: a case absorbs alerts by id (`AbsorbedAlert`).

Histories written before it carry whole AlertRefs in the signal, and a worker of the release
before may receive what intake sends now (intake and workers are upgraded one after the other):
each release must decode the other's payload."""

from workflows.types import AbsorbedAlert, AlertRef, AnalyzedMessage

TENANT = "11111111-2222-3333-4444-555555555555"


def test_a_whole_alert_of_an_older_history_decodes_as_the_id_the_case_absorbs():
    whole = AlertRef(alert_id="da6380000000000000000fp01", tenant_id=TENANT, title="Suspicious connector activity",
                     ip_addresses=["203.0.113.7"], messages=[AnalyzedMessage(network_message_id="m-1")],
                     connector_hint="Contoso Scanner Relay", source="poller")
    assert AbsorbedAlert.model_validate(whole.model_dump(mode="json")) == AbsorbedAlert(
        alert_id="da6380000000000000000fp01", tenant_id=TENANT)


def test_what_intake_sends_now_decodes_on_a_worker_of_the_release_before():
    sent = AbsorbedAlert(alert_id="storm-0042", tenant_id=TENANT).model_dump(mode="json")
    assert AlertRef.model_validate(sent) == AlertRef(alert_id="storm-0042", tenant_id=TENANT)
