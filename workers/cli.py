"""The `quell` command line: run the processes, answer approvals, read cases, run scenarios."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import uvicorn
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activities import cases
from config.settings import MetricsSettings, Settings, load_settings
from workers import key_files
from workers.logging import configure_logging
from workflows import approvals, signatures
from workflows.types import ApproverKey, CaseReport


def exit_now(status: int) -> NoReturn:
    """Flush what was written, then end the process without finalizing the interpreter.

    The Temporal SDK's Rust threads can still hand a result back to Python while the interpreter
    finalizes, and CPython then aborts the process (exit 134, "Fatal Python error:
    PyGILState_Release"; temporalio/sdk-python#300). Once the output is out, finalizing buys
    nothing, so every `quell` run ends here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: report it as CPython's exit would
            status = status or 120
    os._exit(status)


def _exit_status(code: object) -> int:
    """`sys.exit`'s convention: None is 0, an int is itself, anything else is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def temporal_core_logs_to_stderr() -> None:
    """The Temporal SDK's core writes its own log lines to stdout; forwarded, they go through
    Python logging, on stderr (and at the level `configure_logging` sets)."""
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    ))))


class _Quell(typer.Typer):
    """The `quell` entry point (`workers.cli:app`): stdout carries only what a command prints, and
    whatever way the command ends, the process ends through `exit_now`."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        temporal_core_logs_to_stderr()
        try:
            super().__call__(*args, **kwargs)
        except SystemExit as stop:
            exit_now(_exit_status(stop.code))
        except BaseException as error:
            sys.excepthook(type(error), error, error.__traceback__)
            exit_now(1)
        exit_now(0)


app = _Quell(no_args_is_help=True, help="quell: respond to compromised Exchange Online connectors.")
scenario_app = typer.Typer(no_args_is_help=True, help="Run scenario files against the emulator.")
app.add_typer(scenario_app, name="scenario")
poller_app = typer.Typer(no_args_is_help=True, help="The alerts_v2 poller: one Temporal Schedule per tenant.")
app.add_typer(poller_app, name="poller")
keys_app = typer.Typer(no_args_is_help=True, help="Ed25519 key pairs that sign approvals.")
app.add_typer(keys_app, name="keys")

TemporalAddress = Annotated[
    Optional[str], typer.Option("--temporal-address", help="host:port; default from settings")
]


def _settings() -> Settings:
    return load_settings()


async def _client(address: str | None):
    from workers.temporal_connection import connect

    return await connect(_settings(), address)


def _run(coro) -> None:
    asyncio.run(coro)


MetricsPort = Annotated[
    Optional[int],
    typer.Option("--metrics-port", min=1, max=65535, help="serve Prometheus metrics on this port (default: metrics.port)"),
]


def _with_metrics_port(settings: Settings, port: int | None) -> Settings:
    if port is not None:
        settings.metrics = MetricsSettings.model_validate({**settings.metrics.model_dump(), "port": port})
    return settings


@app.command()
def worker(metrics_port: MetricsPort = None) -> None:
    """Run the Temporal worker (case workflow and every activity)."""
    from workers.worker import run_worker

    settings = _with_metrics_port(_settings(), metrics_port)
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    _run(main())


@app.command()
def intake(host: Optional[str] = None, port: Optional[int] = None, metrics_port: MetricsPort = None) -> None:
    """Run the intake service (alert webhook, case status, approvals API)."""
    from workers.intake import create_app
    from workers.metrics import meter_of, prometheus_runtime
    from workers.temporal_connection import connect

    settings = _with_metrics_port(_settings(), metrics_port)
    configure_logging(settings.log_level)
    runtime = prometheus_runtime(settings.metrics)
    api = create_app(settings, lambda: connect(settings, runtime=runtime), meter=meter_of(runtime))
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found installed: this one, which ends the process like a worker asked to stop.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: exit_now(0))
    uvicorn.run(api, host=host or settings.intake.host, port=port or settings.intake.port, log_config=None,
                ssl_certfile=settings.intake.ssl_certfile, ssl_keyfile=settings.intake.ssl_keyfile)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
    render_permissions: Annotated[
        bool, typer.Option("--render-permissions", help="print docs/permissions.md from the manifest and exit")
    ] = False,
    temporal_address: TemporalAddress = None,
) -> None:
    """Check Temporal, the codec keys and each tenant's tokens and grants; exits 1 on a gap."""
    from activities.permissions import render_markdown
    from workers.doctor import diagnose, text_report

    if render_permissions:
        typer.echo(render_markdown(), nl=False)
        return
    settings = _settings()
    configure_logging("ERROR")
    report = asyncio.run(diagnose(settings, temporal_address))
    typer.echo(report.model_dump_json(indent=2) if as_json else text_report(report))
    if not report.ok:
        raise typer.Exit(1)


Tenants = Annotated[Optional[list[str]], typer.Option("--tenant", help="tenant id (repeatable); default: every configured tenant")]


@poller_app.command("install")
def poller_install(tenant: Tenants = None, temporal_address: TemporalAddress = None) -> None:
    """Create or update the poller schedule of each tenant (idempotent; keeps the cursor and a pause)."""
    from workers import schedules

    async def main() -> None:
        client = await _client(temporal_address)
        for schedule_id in await schedules.install(client, _settings(), tenant):
            typer.echo(f"installed {schedule_id} (every {_settings().poller.every})")

    _run(main())


@poller_app.command("remove")
def poller_remove(tenant: Tenants = None, temporal_address: TemporalAddress = None) -> None:
    """Delete the poller schedule of each tenant (its cursor goes with it)."""
    from workers import schedules

    async def main() -> None:
        client = await _client(temporal_address)
        for schedule_id in await schedules.remove(client, tenant or [t.tenant_id for t in _settings().tenants]):
            typer.echo(f"removed {schedule_id}")

    _run(main())


@poller_app.command("trigger")
def poller_trigger(tenant: Annotated[str, typer.Option("--tenant")], temporal_address: TemporalAddress = None) -> None:
    """Run one pass of a tenant's poller now, from its schedule's cursor."""
    from workers import schedules

    async def main() -> None:
        await schedules.trigger(await _client(temporal_address), tenant)
        typer.echo(f"triggered the poller of {tenant}")

    _run(main())


EMULATOR_EXTRA_MODULES = {"emulator", "duckdb", "duckdb_kql"}
"""Top-level modules that come with `pip install 'quell[emulator]'` (the runtime image has none of them)."""


@contextmanager
def _needs_emulator_extra(command: str) -> Iterator[None]:
    """Around the imports of an emulator-side command: without the extra, say what to install and exit 2."""
    try:
        yield
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] not in EMULATOR_EXTRA_MODULES:
            raise
        typer.echo(f"quell {command} needs the emulator extra: pip install 'quell[emulator]'", err=True)
        raise typer.Exit(2) from None


@app.command()
def emulator(
    scenario: Annotated[Path, typer.Option(help="scenario YAML to load")],
    port: int = 8443,
    host: str = "127.0.0.1",
    cert_dir: Path = Path(".quell/certs"),
    quotas: Annotated[str | None, typer.Option(
        help="quota preset instead of the scenario's quotas: microsoft (Microsoft's documented limits) or off")] = None,
) -> None:
    """Serve the Microsoft 365 tenant emulator over HTTPS with a scenario loaded."""
    with _needs_emulator_extra("emulator"):
        from emulator.scenario import QUOTA_PRESETS
        from emulator.server import serve

    if quotas is not None and quotas not in QUOTA_PRESETS:
        typer.echo(f"--quotas takes {' or '.join(QUOTA_PRESETS)}", err=True)
        raise typer.Exit(2)
    configure_logging()
    serve(scenario, host=host, port=port, cert_dir=cert_dir, quotas=QUOTA_PRESETS[quotas] if quotas else None)


def _passphrase(confirm: bool) -> str:
    return os.environ.get(key_files.PASSPHRASE_ENV) or typer.prompt(
        "Key passphrase", hide_input=True, confirmation_prompt=confirm
    )


def _signing_key(who: str, path: Path | None) -> Ed25519PrivateKey:
    """The approver's private key (`--key`, else the default path for the account), checked
    against the local config when it lists that public key under another account."""
    path = path or key_files.default_key_path(who)
    if not path.is_file():
        typer.echo(f"no signing key at {path}: run `quell keys init --as {who}` or pass --key PATH", err=True)
        raise typer.Exit(2)
    try:
        key = key_files.read_key(path, _passphrase(confirm=False) if key_files.is_encrypted(path) else None)
    except ValueError as unreadable:
        typer.echo(f"cannot read the key {path}: {unreadable}", err=True)
        raise typer.Exit(2) from None
    public = signatures.public_key_text(key.public_key())
    owners = {e.account.casefold() for e in _settings().approval.approvers
              if isinstance(e, ApproverKey) and e.public_key == public}
    if owners and who.strip().casefold() not in owners:
        typer.echo(f"the key {path} belongs to {', '.join(sorted(owners))} in the config, not to {who}", err=True)
        raise typer.Exit(2)
    return key


def _decide(
    case: str, action: str, who: str, approve: bool, plan: str | None, reason: str, key: Path | None,
    address: str | None,
) -> None:
    signing_key = _signing_key(who, key)

    async def main() -> None:
        client = await _client(address)
        plan_hash = plan or await cases.current_plan_hash(client, case)
        if plan is None:
            typer.echo(f"plan {plan_hash} (as shown by `quell pending`)")
        try:
            receipt = await cases.decide(
                client, case, cases.new_decision(case, action, plan_hash, who, approve, reason, signing_key)
            )
        except cases.DecisionRefused as refused:
            typer.echo(f"refused: {refused}", err=True)
            raise typer.Exit(1) from None
        if receipt.status == "rejected":
            typer.echo(f"{case} {action}: rejected by {who}")
        elif receipt.still_needed:
            typer.echo(f"{case} {action}: approval recorded ({', '.join(receipt.approvals)}), "
                       f"{receipt.still_needed} more distinct approver(s) needed")
        else:
            typer.echo(f"{case} {action}: approved by {', '.join(receipt.approvals)}; it runs when its turn comes")

    _run(main())


KeyPath = Annotated[Optional[Path], typer.Option("--key", help="private key (default: quell keys init's path for --as)")]


@app.command()
def approve(
    case: str,
    action: str,
    as_: Annotated[str, typer.Option("--as", help="approver account, e.g. soc1@contoso.com")],
    plan: Annotated[Optional[str], typer.Option(help="plan hash you reviewed (default: current)")] = None,
    reason: str = "",
    key: KeyPath = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Approve a pending action of a case, signed with your key."""
    _decide(case, action, as_, True, plan, reason, key, temporal_address)


@app.command()
def reject(
    case: str,
    action: str,
    as_: Annotated[str, typer.Option("--as", help="approver account")],
    reason: Annotated[str, typer.Option(help="why the action must not run")],
    plan: Optional[str] = None,
    key: KeyPath = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Reject a pending action of a case, signed with your key (one rejection vetoes a two-person action)."""
    _decide(case, action, as_, False, plan, reason, key, temporal_address)


@app.command()
def sign(
    case: str,
    action: str,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="the answer")],
    as_: Annotated[str, typer.Option("--as", help="approver account")],
    reason: str = "",
    key: KeyPath = None,
    plan: Annotated[Optional[str], typer.Option(help="plan hash you reviewed (default: current)")] = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Print a signed decision as JSON, the --input of `temporal workflow update execute --name
    decide` or `temporal workflow signal --name decision`. It must arrive within the approval window."""
    signing_key = _signing_key(as_, key)

    async def current_plan() -> str:
        return await cases.current_plan_hash(await _client(temporal_address), case)

    decision = cases.new_decision(case, action, plan or asyncio.run(current_plan()), as_, approve, reason, signing_key)
    typer.echo(decision.model_dump_json())


@keys_app.command("init")
def keys_init(
    as_: Annotated[Optional[str], typer.Option("--as", help="the approver account the key signs for")] = None,
    out: Annotated[Optional[Path], typer.Option(help="where to write the private key")] = None,
    passphrase: Annotated[bool, typer.Option(help=f"encrypt it (passphrase from {key_files.PASSPHRASE_ENV} or a prompt)")] = False,
    api: Annotated[bool, typer.Option("--api", help="the approvals API's key pair (for intake.signing_key)")] = False,
) -> None:
    """Create a key pair for signing approvals and print the public key for the config."""
    if api == (as_ is not None) or (api and passphrase):
        typer.echo("give --as ACCOUNT [--passphrase] for an analyst's key, or --api for the approvals API's "
                   "(which the intake reads unencrypted from its settings)", err=True)
        raise typer.Exit(2)
    default = key_files.config_dir() / "approvals-api.ed25519.pem" if api else key_files.default_key_path(as_ or "")
    path = out or default
    if path.exists():
        typer.echo(f"{path} exists: not overwritten", err=True)
        raise typer.Exit(1)
    key = key_files.write_new_key(path, _passphrase(confirm=True) if passphrase else None)
    public = signatures.public_key_text(key.public_key())
    typer.echo(f"private key: {path} (mode 0600; keep it to yourself)")
    typer.echo(f"key id: {signatures.key_id(public)}")
    if api:
        typer.echo("give the file's content to the intake as intake.signing_key (QUELL_INTAKE__SIGNING_KEY) and add to [approval]:")
        typer.echo(f'api_public_key = "{public}"')
    else:
        typer.echo("add to [approval] approvers:")
        typer.echo(f'{{ account = "{as_}", public_key = "{public}" }}')


@app.command()
def pending(case: Optional[str] = None, temporal_address: TemporalAddress = None) -> None:
    """List actions waiting for approval (of one case, or of every open case)."""

    async def main() -> None:
        client = await _client(temporal_address)
        found = await (cases.pending(client, case) if case else cases.all_pending(client))
        if not found:
            typer.echo("nothing is waiting for approval")
        for p in found:
            typer.echo(
                f"{p.case_id}  {p.action_id}  {p.kind}  {p.target or '-'}  policy={p.policy} "
                f"needs={p.still_needed} plan={p.plan_hash}\n    {p.reason}"
            )

    _run(main())


@app.command("cases")
def list_cases(temporal_address: TemporalAddress = None) -> None:
    """List open cases with stage, verdict and connector."""

    async def main() -> None:
        client = await _client(temporal_address)
        for case in await cases.open_cases(client):
            s = await cases.status(client, case)
            typer.echo(f"{s.case_id}  stage={s.stage}  verdict={s.verdict or '-'}  connector={s.connector or '-'}  pending={len(s.pending)}")

    _run(main())


@app.command()
def report(
    case: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    verify: Annotated[bool, typer.Option(help="verify every decision's signature against the configured keys")] = False,
    from_file: Annotated[Optional[Path], typer.Option("--from", help="a report saved with --json, instead of asking Temporal")] = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Print a case report (Markdown, or JSON with --json); --verify exits 1 if a decision does not verify."""
    from workflows.report import report_markdown

    async def read() -> CaseReport:
        return await cases.report(await _client(temporal_address), case)

    found = CaseReport.model_validate_json(from_file.read_text()) if from_file else asyncio.run(read())
    if not verify:
        typer.echo(found.model_dump_json(indent=2) if as_json else report_markdown(found))
        return
    problems = approvals.report_problems(found, _settings().approval.trust())
    if found.case_id != case:
        problems.insert(0, f"the report is of case {found.case_id}, not {case}")
    decisions = sum(len(r.decisions) for r in found.actions)
    for problem in problems:
        typer.echo(f"DOES NOT VERIFY: {problem}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{case}: all {decisions} decision(s) verify against the configured keys")


@app.command()
def demo(
    auto_approve: Annotated[bool, typer.Option(help="approve every request as the scenario's analysts")] = False,
    scenario: Path = Path("emulator/scenarios/tp-hijacked-hybrid-connector.yaml"),
) -> None:
    """Run a full case against the emulator with a Temporal dev server and its UI."""
    with _needs_emulator_extra("demo"):
        from workers.demo import run_demo

    configure_logging("WARNING")
    _run(run_demo(scenario, auto_approve))


@scenario_app.command("run")
def scenario_run(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    temporal_address: TemporalAddress = None,
    approval_timeout: float = 5.0,
) -> None:
    """Run one scenario and print its result."""
    with _needs_emulator_extra("scenario run"):
        from emulator.scenario import load_scenario
        from workers import scenarios

    configure_logging("ERROR")
    scenarios.trust_emulator_ca()

    async def main() -> None:
        async with scenarios.temporal_client(_settings(), temporal_address) as client:
            result = await scenarios.run_scenario(
                client, load_scenario(file), scenarios.RunOptions(approval_timeout=approval_timeout)
            )
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            typer.echo(f"{result['scenario']}: {result['verdict']} ({result['case_status']}), connector {result['connector']}")
            for a in result["actions"]:
                typer.echo(f"  {a['id']} {a['kind']} {a['target'] or '-'}: {a['status']}")

    _run(main())


@scenario_app.command("check")
def scenario_check(
    files: list[Path],
    temporal_address: TemporalAddress = None,
    approval_timeout: float = 5.0,
    history_dir: Annotated[Optional[Path], typer.Option(help="keep each case's history JSON here")] = None,
    parallel: Annotated[int, typer.Option(min=1, help="scenarios run side by side")] = 4,
) -> None:
    """Run scenarios and compare each with its `expected` block; exits 1 if any fails."""
    with _needs_emulator_extra("scenario check"):
        from workers import scenarios

    configure_logging("ERROR")
    scenarios.trust_emulator_ca()

    async def main() -> int:
        async with scenarios.temporal_client(_settings(), temporal_address) as client:
            passed, failed, lines = await scenarios.check(
                client, files, scenarios.RunOptions(approval_timeout=approval_timeout, history_dir=history_dir),
                parallel,
            )
        for line in lines:
            typer.echo(line)
        typer.echo(f"{passed} passed, {failed} failed")
        return failed

    if asyncio.run(main()):
        raise typer.Exit(1)
