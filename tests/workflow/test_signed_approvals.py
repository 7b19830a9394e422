"""Approvals no one can forge, on the dev server with a real worker and the emulated tenant.

Every refusal goes through a public interface: the `decide` update (as `quell approve` sends
it), the `decision` signal (refusals land in the report's `ignored_signals`), the intake's
approvals API, and the stock `temporal` CLI fed by `quell sign`. The attacker of
docs/security.md can start workflows and send updates and signals; none of it disables a
connector.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from activities import cases
from activities.alert_parsing import parse_alerts
from emulator.scenario import load_scenario
from workers.cli import app as quell
from workers.scenarios import RunOptions, Stack, temporal_binary, tenant_stack
from workflows import signatures
from workflows.case import ConnectorCaseWorkflow
from workflows.report import report_markdown
from workflows.types import (
    ActionInput,
    ApprovalPolicy,
    ApproverKey,
    CaseReport,
    Decision,
    PendingApproval,
    Plan,
)
from tests.conftest import PROJECT_SCENARIOS, eventually

SOC1, SOC2, SUSPECT = "soc1@contoso.com", "soc2@contoso.com", "helpdesk.op@contoso.com"
TOKENS = {SOC1: "tok-soc1", SOC2: "tok-soc2"}
HYBRID = PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml"
CREATED = PROJECT_SCENARIOS / "tp-bruteforced-admin-creates-inbound-connector.yaml"


@asynccontextmanager
async def signed_stack(client: Client, cert_dir: Path, path: Path = HYBRID, timeout: float = 120) -> AsyncIterator[Stack]:
    """The scenario's tenant; its analysts (and the suspect admin, so that SoD has something to
    refuse) hold keys the worker's settings list."""
    text = path.read_text().replace(f'approvers: ["{SOC1}", "{SOC2}"]', f'approvers: ["{SOC1}", "{SOC2}", "{SUSPECT}"]')
    async with tenant_stack(client, load_scenario(text), RunOptions(approval_timeout=timeout), TOKENS, cert_dir) as stack:
        yield stack


def set_approval(stack: Stack, **changes) -> None:
    """Edit the worker's approval settings (what an edit of its config file does)."""
    stack.settings.approval = stack.settings.approval.model_copy(update=changes)


async def start_case(client: Client, stack: Stack, policy: ApprovalPolicy | None = None) -> str:
    """A case of its own (unique id), started as anyone who reaches Temporal can start one."""
    [alert] = parse_alerts(stack.scenario.alert, stack.scenario.tenant.id)
    case_input = cases.case_input(stack.settings, alert)
    if policy is not None:
        case_input = case_input.model_copy(update={"policy": policy})
    case = f"connector-case/{alert.tenant_id}/test/{uuid.uuid4().hex[:10]}"
    await client.start_workflow(ConnectorCaseWorkflow.run, case_input, id=case,
                                task_queue=stack.settings.temporal.task_queue)
    return case


async def pending(client: Client, case: str, until=lambda found: bool(found)) -> dict[str, PendingApproval]:
    async def by_kind() -> dict[str, PendingApproval]:
        return {p.kind: p for p in await cases.pending(client, case)}

    return await eventually(by_kind, until, timeout=60)


def signed(stack: Stack, case: str, p: PendingApproval, who: str = SOC1, key: Ed25519PrivateKey | None = None,
           approve: bool = True, issued: datetime | None = None) -> Decision:
    decision = cases.new_decision(case, p.action_id, p.plan_hash, who, approve, "" if approve else "no",
                                  key or stack.analysts.keys[who])
    if issued is not None:
        decision = signatures.sign(decision.model_copy(update={"issued_at": issued}), key or stack.analysts.keys[who])
    return decision


async def approve_the_rest(client: Client, stack: Stack, case: str) -> CaseReport:
    """SOC1 approves whatever still waits, until the case ends."""
    handle = cases.handle(client, case)
    result = asyncio.ensure_future(handle.result())
    async with asyncio.timeout(90):
        while not result.done():
            for p in await cases.pending(client, case):
                if SOC1 not in p.approvals:
                    try:
                        await cases.decide(client, case, signed(stack, case, p))
                    except cases.DecisionRefused:
                        pass  # it moved on between the query and the update
            await asyncio.wait([result], timeout=0.2)
    return CaseReport.model_validate(result.result().model_dump())


def quell_cli(stack: Stack, *args: str) -> tuple[int, str]:
    """`quell ...` with the worker's approval settings as its config."""
    env = {"QUELL_CONFIG": "/nonexistent/quell.toml", "QUELL_APPROVAL": stack.settings.approval.model_dump_json()}
    result = CliRunner().invoke(quell, list(args), env=env)
    return result.exit_code, result.output


def key_file(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.pem"
    path.write_bytes(signatures.private_key_pem(key))
    return path


# --------------------------------------------------------------------------- the update


async def test_forged_replayed_stale_and_self_approvals_are_refused(client, cert_dir, tmp_path):
    async with signed_stack(client, cert_dir) as stack:
        laptop = Ed25519PrivateKey.generate()  # soc1's second key: still one person
        set_approval(stack, by_action={"revert_connector_change": "two_person", "reset_admin_password": "two_person"},
                     approvers=[*stack.settings.approval.approvers,
                                ApproverKey(account=SOC1, public_key=signatures.public_key_text(laptop.public_key()))])
        case = await start_case(client, stack)
        waiting = await pending(client, case)
        revert, reset = waiting["revert_connector_change"], waiting["reset_admin_password"]
        assert revert.still_needed == 2

        now = datetime.now(timezone.utc)
        refusals = {
            "unsigned decision refused": Decision(case_id=case, action_id=revert.action_id, approver=SOC1,
                                                  plan_hash=revert.plan_hash),
            "unknown key": signed(stack, case, revert, key=Ed25519PrivateKey.generate()),
            f"belongs to {SOC2}": signed(stack, case, revert, key=stack.analysts.keys[SOC2]),
            "not an authorised approver": signed(stack, case, revert, who="mallory@contoso.com",
                                                 key=Ed25519PrivateKey.generate()),
            "signed for case": signed(stack, case + "-other", revert),
            "longer than 0:15:00 ago": signed(stack, case, revert, issued=now - timedelta(minutes=20)),
            "in the future": signed(stack, case, revert, issued=now + timedelta(minutes=10)),
            "named by this case": signed(stack, case, revert, who=SUSPECT),
        }
        for reason, decision in refusals.items():
            with pytest.raises(cases.DecisionRefused, match=reason):
                await cases.decide(client, case, decision)
        with pytest.raises(cases.DecisionRefused, match="named by this case"):  # nor may the suspect veto
            await cases.decide(client, case, signed(stack, case, reset, who=SUSPECT, approve=False))

        first = signed(stack, case, revert)
        assert (await cases.decide(client, case, first)).still_needed == 1
        with pytest.raises(cases.DecisionRefused, match=f"nonce {first.nonce} was used before"):
            await cases.decide(client, case, first)
        for same_person in (signed(stack, case, revert), signed(stack, case, revert, key=laptop)):
            with pytest.raises(cases.DecisionRefused, match="a second, distinct approver"):
                await cases.decide(client, case, same_person)

        # The approvals API signs with one key for whoever it authenticated: that key counts once.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.intake), base_url="http://intake") as api:
            body = {"action_id": reset.action_id, "plan_hash": reset.plan_hash}
            by_soc1 = await api.post(f"/v1/cases/{case}/approvals", json=body, headers={"Authorization": "Bearer tok-soc1"})
            assert by_soc1.status_code == 200, by_soc1.text
            by_soc2 = await api.post(f"/v1/cases/{case}/approvals", json=body, headers={"Authorization": "Bearer tok-soc2"})
            assert by_soc2.status_code == 409 and "a second, distinct key" in by_soc2.json()["detail"]
        await cases.decide(client, case, signed(stack, case, reset, who=SOC2))
        await cases.decide(client, case, signed(stack, case, revert, who=SOC2))

        report = await approve_the_rest(client, stack, case)

    assert report.case_status == "completed"
    records = {r.action.kind: r for r in report.actions}
    assert records["revert_connector_change"].status == "done"
    assert records["revert_connector_change"].approved_by == [SOC1, SOC2]
    assert records["reset_admin_password"].approved_by == [SOC1, SOC2]
    api_key = signatures.key_id(stack.settings.approval.api_public_key)
    assert [d.key_id for d in records["reset_admin_password"].decisions] == [
        api_key, signatures.key_id(signatures.public_key_text(stack.analysts.keys[SOC2].public_key()))]
    assert all(d.signature and d.nonce and d.issued_at for r in report.actions for d in r.decisions)
    first = records["revert_connector_change"].decisions[0]
    assert f"key {first.key_id}, issued" in report_markdown(report) and first.signature in report_markdown(report)

    # Offline verification: the report as stored passes; one altered signature is named.
    saved = tmp_path / "report.json"
    saved.write_text(report.model_dump_json())
    code, output = quell_cli(stack, "report", case, "--verify", "--from", str(saved))
    assert code == 0 and "verify against the configured keys" in output, output
    revert_id = records["revert_connector_change"].action.id
    tampered = report.model_copy(deep=True)
    first_decision = next(r for r in tampered.actions if r.action.id == revert_id).decisions[0]
    flipped = first_decision.signature[:10] + ("A" if first_decision.signature[10] != "A" else "B") + first_decision.signature[11:]
    next(r for r in tampered.actions if r.action.id == revert_id).decisions[0] = first_decision.model_copy(
        update={"signature": flipped})
    saved.write_text(tampered.model_dump_json())
    code, output = quell_cli(stack, "report", case, "--verify", "--from", str(saved))
    assert code == 1
    assert f"DOES NOT VERIFY: {revert_id} approval by {SOC1}" in output and "bad signature" in output
    assert output.count("DOES NOT VERIFY") == 1


# --------------------------------------------------------------------------- the signal and the stock CLI


async def temporal_cli(client: Client, *args: str) -> tuple[int, str]:
    """The stock `temporal` CLI against the dev server (a subprocess: the worker keeps running)."""
    address = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        temporal_binary("temporal"), *args, "--address", address, "--namespace", client.namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_signals_and_the_stock_temporal_cli_take_only_signed_decisions(client, cert_dir, tmp_path):
    async with signed_stack(client, cert_dir) as stack:
        case = await start_case(client, stack)
        waiting = await pending(client, case)
        revert, reset = waiting["revert_connector_change"], waiting["reset_admin_password"]
        handle = cases.handle(client, case)

        # Signals: refused ones are dropped and recorded.
        forged = Decision(case_id=case, action_id=revert.action_id, approver=SOC1, plan_hash=revert.plan_hash)
        expired = signed(stack, case, revert, issued=datetime.now(timezone.utc) - timedelta(hours=1))
        await handle.signal(ConnectorCaseWorkflow.decision, forged)
        await handle.signal(ConnectorCaseWorkflow.decision, expired)
        await handle.signal(ConnectorCaseWorkflow.decision, signed(stack, case, revert, who=SUSPECT))

        # The stock CLI: an unsigned update is refused; `quell sign` output is accepted once.
        unsigned = forged.model_dump_json()
        code, output = await temporal_cli(client, "workflow", "update", "execute", "--workflow-id", case,
                                          "--name", "decide", "--input", unsigned)
        assert code != 0 and "unsigned decision refused" in output
        soc1_key = key_file(tmp_path, stack.analysts.keys[SOC1])
        code, decision_json = quell_cli(stack, "sign", case, revert.action_id, "--approve", "--as", SOC1,
                                        "--key", str(soc1_key), "--plan", revert.plan_hash)
        assert code == 0, decision_json
        for expected_code, says in ((0, "approvals"), (1, "was used before")):  # once, then a replay
            code, output = await temporal_cli(client, "workflow", "update", "execute", "--workflow-id", case,
                                              "--name", "decide", "--input", decision_json.strip())
            assert code == expected_code and says in output, output
        code, wrong_owner = quell_cli(stack, "sign", case, reset.action_id, "--approve", "--as", SOC2,
                                      "--key", str(soc1_key), "--plan", reset.plan_hash)
        assert code == 2 and f"belongs to {SOC1}" in wrong_owner
        # The same signed decision through `temporal workflow signal`: counted, and a replay is recorded.
        code, reset_json = quell_cli(stack, "sign", case, reset.action_id, "--approve", "--as", SOC1,
                                     "--key", str(soc1_key), "--plan", reset.plan_hash)
        for _ in range(2):
            code, output = await temporal_cli(client, "workflow", "signal", "--workflow-id", case,
                                              "--name", "decision", "--input", reset_json.strip())
            assert code == 0, output

        report = await approve_the_rest(client, stack, case)

    ignored = report.notes["ignored_signals"]
    assert any("unsigned decision refused" in line for line in ignored)
    assert any("longer than 0:15:00 ago" in line for line in ignored)
    assert any(line.startswith(f"{revert.action_id} by {SUSPECT}") and "named by this case" in line for line in ignored)
    assert any(line.startswith(f"{reset.action_id} by {SOC1}") and "was used before" in line for line in ignored)
    records = {r.action.kind: r for r in report.actions}
    assert records["revert_connector_change"].approved_by == [SOC1] and records["revert_connector_change"].status == "done"
    assert records["reset_admin_password"].approved_by == [SOC1] and records["reset_admin_password"].status == "done"


# --------------------------------------------------------------------------- trust from the worker


async def test_an_analyst_removed_from_the_workers_settings_no_longer_counts(client, cert_dir):
    async with signed_stack(client, cert_dir) as stack:
        case = await start_case(client, stack)
        waiting = await pending(client, case)
        revert, reset = waiting["revert_connector_change"], waiting["reset_admin_password"]
        await cases.decide(client, case, signed(stack, case, reset))  # approved early, for later

        set_approval(stack, approvers=[e for e in stack.settings.approval.approvers if e.account != SOC1])
        await cases.decide(client, case, signed(stack, case, revert, who=SOC2))
        # Before the reset runs the case re-reads the trust: SOC1's approval is withdrawn.
        again = await pending(client, case, until=lambda found: "reset_admin_password" in found)
        assert again["reset_admin_password"].approvals == []
        with pytest.raises(cases.DecisionRefused, match=f"{SOC1} is not an authorised approver"):
            await cases.decide(client, case, signed(stack, case, reset))
        await cases.decide(client, case, signed(stack, case, reset, who=SOC2))
        report = await approve_the_rest_as(client, stack, case, SOC2)

    records = {r.action.kind: r for r in report.actions}
    assert records["reset_admin_password"].status == "done"
    assert records["reset_admin_password"].approved_by == [SOC2]
    assert report.notes["withdrawn_approvals"] == [
        f"{reset.action_id} approval by {SOC1} withdrawn: {SOC1} is not an authorised approver"]


async def approve_the_rest_as(client: Client, stack: Stack, case: str, who: str) -> CaseReport:
    handle = cases.handle(client, case)
    result = asyncio.ensure_future(handle.result())
    async with asyncio.timeout(90):
        while not result.done():
            for p in await cases.pending(client, case):
                try:
                    await cases.decide(client, case, signed(stack, case, p, who=who))
                except cases.DecisionRefused:
                    pass
            await asyncio.wait([result], timeout=0.2)
    return CaseReport.model_validate(result.result().model_dump())


# --------------------------------------------------------------------------- an attacker's own workflow


@workflow.defn(name="rogue-case")
class RogueCase:
    """What an attacker with Temporal access can run on a task queue of their own: schedule a
    quell action activity on the real worker's queue with an input of their making."""

    @workflow.run
    async def run(self, inp: ActionInput, queue: str) -> str:
        try:
            await workflow.execute_activity("action.disable-connector", inp, task_queue=queue,
                                            start_to_close_timeout=timedelta(seconds=30))
        except ActivityError as failure:
            return str(failure.cause)
        return "ran"


async def test_a_crafted_case_input_and_a_rogue_workflow_cannot_make_the_worker_act(client, cert_dir):
    async with signed_stack(client, cert_dir, CREATED) as stack:
        everything_auto = ApprovalPolicy(approvers=["mallory@evil.example"], default="auto", by_action={},
                                         expire_after=timedelta(seconds=10))
        case = await start_case(client, stack, policy=everything_auto)
        waiting = await pending(client, case)
        disable = waiting["disable_connector"]
        assert disable.policy == "approve"  # the worker's policy, not the input's
        mallory_key = Ed25519PrivateKey.generate()
        with pytest.raises(cases.DecisionRefused, match="not an authorised approver"):
            await cases.decide(client, case, signed(stack, case, disable, who="mallory@evil.example", key=mallory_key))
        with pytest.raises(cases.DecisionRefused, match="unknown key"):
            await cases.decide(client, case, signed(stack, case, disable, key=mallory_key))
        report = await cases.handle(client, case).result()
        records = {r.action.kind: r for r in report.actions}
        assert records["disable_connector"].status == "expired" and records["disable_connector"].approved_by == []

        # The rogue workflow hands the worker's activity a plan that says `auto` and an approval
        # signed with the attacker's key in an analyst's name.
        action = records["disable_connector"].action.model_copy(update={"policy": "auto"})
        plan = Plan(actions=[action])
        forged = cases.new_decision(case, action.id, plan.hash, SOC1, True, "", mallory_key)
        crafted = ActionInput(tenant_id=stack.scenario.tenant.id, case_id=case, action=action, plan=plan,
                              decisions=[forged])
        async with Worker(client, task_queue=f"rogue-{uuid.uuid4().hex[:8]}", workflows=[RogueCase],
                          workflow_runner=UnsandboxedWorkflowRunner()) as rogue:
            outcome = await client.execute_workflow(RogueCase.run, args=[crafted, stack.settings.temporal.task_queue],
                                                    id=f"rogue-{uuid.uuid4().hex[:8]}", task_queue=rogue.task_queue)
        assert outcome.startswith("NotApproved: refused by the worker's approval check: disable_connector needs 1 valid signed")
        assert "unknown key" in outcome

        connector = next(c for c in stack.emulator_state()["tenant"]["inbound_connectors"]
                         if c["Name"] == "Cloud Mail Relay")
    assert connector["Enabled"] is True
