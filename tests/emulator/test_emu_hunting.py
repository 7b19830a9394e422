"""Advanced hunting over the scenario's tables, through Graph's runHuntingQuery."""

from __future__ import annotations

from emu_client import Api


def hunt(api: Api, query: str, **extra: str):
    return api.graph("POST", "/security/runHuntingQuery", json={"Query": query, **extra})


def test_counts_over_the_example_tables(api: Api) -> None:
    spam = hunt(api, 'EmailEvents | where Connectors has "Contoso Hybrid" and NetworkMessageId startswith "spam-" | count')
    assert spam.status_code == 200 and spam.json()["results"] == [{"Count": 400}]
    by_hour = hunt(api, "EmailEvents | where Timestamp > ago(7d) | summarize Messages = dcount(NetworkMessageId) "
                        "by Hour = bin(Timestamp, 1h) | top 1 by Messages").json()
    assert by_hour["schema"] == [{"Name": "Hour", "Type": "DateTime"}, {"Name": "Messages", "Type": "Int64"}]
    assert by_hour["results"][0]["Messages"] == 400 and by_hour["results"][0]["Hour"].endswith(":00:00Z")
    assert by_hour["@odata.context"].endswith("#microsoft.graph.security.huntingQueryResults")


def test_mv_expand_over_audit_parameters_in_cloud_app_events(api: Api) -> None:
    rows = hunt(api, "CloudAppEvents | where ActionType == 'Set-InboundConnector' "
                     "| mv-expand Parameter = RawEventData.Parameters "
                     "| extend Name = tostring(Parameter.Name), Value = tostring(Parameter.Value) "
                     "| where Name == 'SenderIPAddresses' | project Timestamp, AccountObjectId, Value, RawEventData "
                     "| order by Timestamp asc").json()
    assert [r["Value"] for r in rows["results"]] == ["203.0.113.5", "198.51.100.23"]
    assert rows["results"][1]["AccountObjectId"] == "2a7d5b20-0000-4000-8000-000000000002"
    assert rows["results"][1]["RawEventData"]["ObjectId"] == "Contoso Hybrid"  # dynamic columns are JSON
    assert {"Name": "RawEventData", "Type": "Object"} in rows["schema"]


def test_known_tables_exist_without_rows(api: Api) -> None:
    for table in ("EmailUrlInfo", "EmailAttachmentInfo", "UrlClickEvents"):
        response = hunt(api, f"{table} | where Timestamp > ago(7d) | take 5")
        assert response.status_code == 200 and response.json()["results"] == [], table
    columns = hunt(api, "EmailAttachmentInfo | take 1").json()["schema"]
    assert {"Name": "FileSize", "Type": "Int64"} in columns and {"Name": "SHA256", "Type": "String"} in columns


def test_kql_errors_answer_400_in_graph_shape(api: Api) -> None:
    for query in ("EmailEvents | where", "NoSuchTable | take 1", "EmailEvents | where Nope == 1",
                  'EmailEvents | where ipv4_is_in_range(SenderIPv4, "203.0.113.0/28")',
                  # A declaration must be rendered to `let` lines before sending: unbound, it fails.
                  "declare query_parameters(connector:string); EmailEvents | where Connectors == connector"):
        response = hunt(api, query)
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "BadRequest" and response.json()["error"]["message"], query
    assert hunt(api, ".set T <| EmailEvents").status_code == 400  # no writes through hunting


def test_timespan_narrows_the_window(api: Api) -> None:
    everything = hunt(api, "EmailEvents | count").json()["results"][0]["Count"]
    last_day = hunt(api, "EmailEvents | count", Timespan="P1D").json()["results"][0]["Count"]
    assert everything == 1395 and 400 < last_day < everything
    assert hunt(api, "EmailEvents | count", Timespan="yesterday").status_code == 400
