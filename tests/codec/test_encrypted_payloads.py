"""Case data reaches Temporal encrypted; the intake's /codec gives it back to an authenticated caller only.

One case (a revert Exchange ignores, so a failed activity's error is in history too) runs on a
real dev server with key k1 current. Its history holds no user, message or connector name in
the clear (the connector name only in its search attribute, by design: workflows/search_attributes.py).
Then the keys rotate (k2 current, k1 kept for reading): the intake's codec endpoint, and the
stock Temporal CLI through it, decode the k1 history; a worker with the rotated keys replays it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities import cases
from config.settings import CodecSettings, IntakeSettings, Settings, TenantSettings
from emulator.expectations import judge
from emulator.scenario import load_scenario
from tests.conftest import PROJECT_SCENARIOS, eventually
from tests.intake.conftest import intake_client, temporal_down
from workers.intake import create_app
from workers.scenarios import (
    RunOptions, answer_until_closed, deliver_alert, isolated_namespace, result_json, temporal_binary, tenant_stack,
)
from workers.temporal_connection import data_converter
from workflows.case import ConnectorCaseWorkflow

SCENARIO = "tp-hijacked-connector-revert-not-applied"
CASE_DATA = ["helpdesk.op@contoso.com", "billing@contoso.com", "soc1@contoso.com", "spam-0",
             "victim0@target0.example", "bounce-0@qx-mailer.example"]
CONNECTOR = "Contoso Hybrid"
CONNECTOR_GUID = "9b0e4c50-0000-4000-8000-000000000010"
UI = "http://localhost:8233"
TOKEN = secrets.token_urlsafe(16)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _key() -> SecretStr:
    return SecretStr(base64.b64encode(os.urandom(32)).decode())


K1, K2 = _key(), _key()
BEFORE = CodecSettings(current="k1", keys={"k1": K1})
ROTATED = CodecSettings(current="k2", keys={"k1": K1, "k2": K2})
K1_DROPPED = CodecSettings(current="k2", keys={"k2": K2})


@dataclass(frozen=True)
class EncryptedCase:
    namespace: str
    case_id: str
    history: str  # JSON, as `temporal workflow show --output json` and fetch_history().to_json() give it


@pytest.fixture(scope="module")
async def encrypted_case(dev_server: WorkflowEnvironment, cert_dir) -> EncryptedCase:
    scenario = load_scenario(PROJECT_SCENARIOS / f"{SCENARIO}.yaml")
    encrypting = Client(dev_server.client.service_client, namespace="default", data_converter=data_converter(BEFORE))
    async with isolated_namespace(encrypting) as client:
        async with tenant_stack(client, scenario, RunOptions(approval_timeout=120), {"defender": TOKEN}, cert_dir) as stack:
            async with intake_client(stack.intake) as http:
                [case] = await deliver_alert(http, client, stack, TOKEN)
            report = await answer_until_closed(client, case, scenario, stack.analysts, timeout=120)
            assert judge(scenario.expected, result_json(scenario, report, stack.emulator_state(), 1)) == []
        history = await cases.handle(client, case).fetch_history()
        return EncryptedCase(client.namespace, case, history.to_json())


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _search_attribute_updates_removed(history: str) -> dict[str, Any]:
    """The history without search attributes and without the markers of `workflow.patched`, whose
    payload (the patch id) the SDK writes in the clear."""
    document = json.loads(history)
    for event in document["events"]:
        event.pop("upsertWorkflowSearchAttributesEventAttributes", None)
        event.get("workflowExecutionStartedEventAttributes", {}).pop("searchAttributes", None)
        if "patch-data" in event.get("markerRecordedEventAttributes", {}).get("details", {}):
            event.pop("markerRecordedEventAttributes")
    return document


def _payloads(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in _walk(document) if "metadata" in node and "encoding" in node["metadata"]]


def _plain_texts(history: str) -> list[str]:
    """The history as text, with every base64 payload data decoded too."""
    document = json.loads(history)
    return [history] + [base64.b64decode(p.get("data", "")).decode("utf-8", "replace") for p in _payloads(document)]


def _encoding(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload["metadata"].get("encoding", ""))


def test_history_holds_no_case_data_in_the_clear(encrypted_case):
    texts = _plain_texts(encrypted_case.history)
    for value in CASE_DATA:
        assert not any(value in text for text in texts), f"{value} is readable in history"

    # Every payload but the search attributes and the SDK's patch markers (the patch id, written by
    # the SDK core, which no codec sees) is ciphertext under k1 ...
    document = _search_attribute_updates_removed(encrypted_case.history)
    markers = [e.pop("markerRecordedEventAttributes") for e in document["events"] if "markerRecordedEventAttributes" in e]
    assert {m["markerName"] for m in markers} <= {"core_patch"}
    assert all(CONNECTOR not in json.dumps(m) for m in markers)
    payloads = _payloads(document)
    assert payloads and {_encoding(p) for p in payloads} == {b"binary/encrypted"}
    assert {base64.b64decode(p["metadata"]["encryption-key-id"]) for p in payloads} == {b"k1"}
    # ... failures included: their message and stack trace travel in an encrypted payload.
    failures = [node["failure"] for node in _walk(json.loads(encrypted_case.history)) if "failure" in node]
    assert failures and all(f["message"] == "Encoded failure" and not f.get("stackTrace") for f in failures)

    # The connector is named by its Guid in its search attribute; its name is nowhere in the clear.
    assert not any(CONNECTOR in text for text in _plain_texts(encrypted_case.history))
    assert any(CONNECTOR_GUID in text for text in _plain_texts(encrypted_case.history))


def codec_intake(codec: CodecSettings) -> Any:
    api_tokens = {"soc1@contoso.com": SecretStr(TOKEN)}
    tenant = TenantSettings(tenant_id="contoso", client_id="quell", client_secret="unused")
    intake = IntakeSettings(
        api_tokens=api_tokens, analysts={"soc1@contoso.com": {"tenants": ["contoso"]}}, codec_cors_origins=[UI]
    )
    settings = Settings(tenants=[tenant], codec=codec, intake=intake)
    return create_app(settings, temporal_down)


async def test_the_codec_endpoint_decodes_after_rotation_for_an_authenticated_caller_only(encrypted_case):
    body = {"payloads": _payloads(_search_attribute_updates_removed(encrypted_case.history))}
    async with intake_client(codec_intake(ROTATED)) as http:
        decoded = await http.post("/codec/decode", json=body, headers={**BEARER, "Origin": UI})
        assert decoded.status_code == 200, decoded.text
        assert decoded.headers["access-control-allow-origin"] == UI
        plain = [base64.b64decode(p.get("data", "")).decode() for p in decoded.json()["payloads"]]
        for value in CASE_DATA + [CONNECTOR]:
            assert any(value in text for text in plain), f"{value} is not in the decoded payloads"
        assert {_encoding(p) for p in decoded.json()["payloads"]} <= {b"json/plain", b"binary/null"}

        assert (await http.post("/codec/decode", json=body)).status_code == 401
        forged = await http.post("/codec/decode", json=body, headers={"Authorization": "Bearer nope"})
        assert forged.status_code == 401 and "helpdesk" not in forged.text

        # New data is encrypted with the current key.
        plain_payload = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                         "data": base64.b64encode(b'"helpdesk.op@contoso.com"').decode()}
        encoded = await http.post("/codec/encode", json={"payloads": [plain_payload]}, headers=BEARER)
        assert encoded.status_code == 200
        [sealed] = encoded.json()["payloads"]
        assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"k2"
        assert b"helpdesk" not in base64.b64decode(sealed["data"])

        # Altered ciphertext is refused, not decoded into something else.
        for altered in (b"\0" * 40, b"\0" * 4):
            tampered = dict(body["payloads"][0], data=base64.b64encode(altered).decode())
            refused = await http.post("/codec/decode", json={"payloads": [tampered]}, headers=BEARER)
            assert refused.status_code == 400 and "does not decrypt" in refused.json()["detail"]
        junk = await http.post("/codec/decode", content=b"{not json", headers=BEARER)
        assert junk.status_code == 400

    async with intake_client(codec_intake(K1_DROPPED)) as http:
        unknown = await http.post("/codec/decode", json=body, headers=BEARER)
        assert unknown.status_code == 400 and "'k1'" in unknown.json()["detail"]


async def test_the_ui_origin_alone_passes_the_cors_preflight():
    async with intake_client(codec_intake(ROTATED)) as http:
        asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
        allowed = await http.options("/codec/decode", headers={"Origin": UI, **asks})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == UI
        assert "authorization" in allowed.headers["access-control-allow-headers"]
        other = await http.options("/codec/decode", headers={"Origin": "https://attacker.example", **asks})
        assert "access-control-allow-origin" not in other.headers


async def test_without_keys_there_is_no_codec_endpoint():
    async with intake_client(codec_intake(CodecSettings())) as http:
        assert (await http.post("/codec/decode", json={"payloads": []}, headers=BEARER)).status_code == 404


@pytest.fixture
async def served_intake() -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(codec_intake(ROTATED), host="127.0.0.1", port=0, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        async def started() -> bool:
            return server.started

        await eventually(started, bool, timeout=10)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_the_temporal_cli_reads_the_case_through_the_codec_endpoint(encrypted_case, dev_server, served_intake):
    command = [temporal_binary("temporal"), "workflow", "show", "--output", "json",
               "--address", dev_server.client.service_client.config.target_host,
               "--namespace", encrypted_case.namespace, "--workflow-id", encrypted_case.case_id,
               "--codec-endpoint", f"{served_intake}/codec"]
    env = {**os.environ, "TEMPORAL_CODEC_AUTH": f"Bearer {TOKEN}"}
    shown = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    texts = _plain_texts(shown.stdout)
    assert all(any(value in text for text in texts) for value in CASE_DATA)


async def test_a_worker_with_rotated_keys_replays_the_k1_history(encrypted_case):
    history = WorkflowHistory.from_json(encrypted_case.case_id, encrypted_case.history)
    replayer = Replayer(workflows=[ConnectorCaseWorkflow], data_converter=data_converter(ROTATED))
    await replayer.replay_workflow(history)
