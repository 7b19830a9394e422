"""The audit trail proven in a real browser: headless Chromium reads a case in the Temporal UI.

A dev server with its UI, a worker and the emulator run the scenario in which analysts approve
the plan but reject the MFA hardening (`tp-hijacked-connector-analyst-rejects-mfa`), answered
through `decide` as `quell approve` sends it. Case data is encrypted (`[codec]`); the UI decodes
it through the intake's `/codec`, with the analyst's token added to the UI's codec calls (what
`TEMPORAL_CODEC_PASS_ACCESS_TOKEN` does for a UI signed in with Entra ID). The page must show the
case's summary and details (with the link to the alert in Defender), the decision trail (approver,
decision, reason, plan hash), the action summaries, and the list must filter on verdict, stage and
pending approvals. A screenshot of the case page is kept in `.quell/artifacts/`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import uvicorn
from playwright.async_api import Page, Route, async_playwright, expect
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from activities import cases
from config.settings import AnalystGrant, CodecSettings, IntakeSettings, Settings, TenantSettings
from emulator.expectations import judge
from emulator.scenario import load_scenario
from tests.conftest import PROJECT_SCENARIOS, eventually, free_port
from tests.intake.conftest import intake_client, temporal_down
from workers.intake import create_app
from workers.scenarios import RunOptions, answer_until_closed, deliver_alert, result_json, temporal_binary, tenant_stack
from workers.temporal_connection import data_converter
from workflows import search_attributes as sa
from workflows.types import ActionRecord, CaseReport

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install chromium` (.ci/run installs it)"
)

SCENARIO = "tp-hijacked-connector-analyst-rejects-mfa"
ARTIFACTS = Path(__file__).parents[2] / ".quell" / "artifacts"
ANALYST = "soc1@contoso.com"
TOKEN = secrets.token_urlsafe(16)
CODEC = CodecSettings(current="ui", keys={"ui": SecretStr(base64.b64encode(os.urandom(32)).decode())})
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SEEN = 30_000  # ms: how long the page may take to show a fact (it decodes through the codec first)


@asynccontextmanager
async def _codec_endpoint(ui_origin: str, tenant: str) -> AsyncIterator[str]:
    """The intake's /codec for the analyst, callable from the UI's origin; its base URL."""
    settings = Settings(
        tenants=[TenantSettings(tenant_id=tenant, client_id="c", client_secret="s")],
        codec=CODEC,
        intake=IntakeSettings(
            api_tokens={ANALYST: SecretStr(TOKEN)},
            analysts={ANALYST: AnalystGrant(tenants=[tenant])},
            codec_cors_origins=[ui_origin],
        ),
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings, temporal_down), host="127.0.0.1", port=0,
                                           log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        async def started() -> bool:
            return server.started

        await eventually(started, bool, timeout=10)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving


@dataclass(frozen=True)
class UiCase:
    """A finished case, its report and the UI that shows it, with the worker still serving its queries."""

    ui: str
    codec_url: str
    case: str
    run_id: str
    report: CaseReport

    @property
    def page_url(self) -> str:
        return f"{self.ui}/namespaces/default/workflows/{quote(self.case, safe='')}/{self.run_id}"


@pytest.fixture(scope="module")
async def ui_case(cert_dir) -> AsyncIterator[UiCase]:
    scenario = load_scenario(PROJECT_SCENARIOS / f"{SCENARIO}.yaml")
    ui_port = free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    async with _codec_endpoint(ui, scenario.tenant.id) as codec_url, await WorkflowEnvironment.start_local(
        data_converter=data_converter(CODEC),
        search_attributes=sa.ALL,
        dev_server_existing_path=temporal_binary("temporal"),
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", f"{codec_url}/codec"],
    ) as env:
        client = env.client
        options = RunOptions(approval_timeout=120)
        async with tenant_stack(client, scenario, options, {"defender": TOKEN}, cert_dir) as stack:
            async with intake_client(stack.intake) as http:
                [case] = await deliver_alert(http, client, stack, TOKEN)
            report = await answer_until_closed(client, case, scenario, stack.analysts, timeout=120)
            assert judge(scenario.expected, result_json(scenario, report, stack.emulator_state(), 1)) == []
            run_id = (await cases.handle(client, case).describe()).run_id
            yield UiCase(ui, codec_url, case, run_id, report)


@pytest.fixture
async def page(ui_case: UiCase) -> AsyncIterator[Page]:
    """A fresh headless Chromium page whose codec calls carry the analyst's token."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            opened = await browser.new_page(viewport={"width": 1440, "height": 1200})

            async def with_token(route: Route) -> None:
                await route.continue_(headers={**route.request.headers, "authorization": f"Bearer {TOKEN}"})

            await opened.route(f"{ui_case.codec_url}/codec/**", with_token)
            yield opened
        finally:
            await browser.close()


def _label(record: ActionRecord) -> str:
    return f"{record.action.id} {record.action.kind.replace('_', ' ')}"


def _decided(report: CaseReport) -> tuple[ActionRecord, list[ActionRecord]]:
    rejected = [r for r in report.actions if r.status == "rejected"]
    approved = [r for r in report.actions if r.approved_by]
    assert [r.action.kind for r in rejected] == ["require_admin_mfa"] and len(approved) >= 2
    return rejected[0], approved


async def test_the_case_page_shows_summary_details_and_every_decision(ui_case: UiCase, page: Page):
    report = ui_case.report
    rejected, approved = _decided(report)
    await page.goto(f"{ui_case.page_url}/user-metadata")

    summary = page.frame_locator("#user-metadata-summary").locator("body")
    await expect(summary).to_contain_text(f"Suspicious connector activity: alert {report.alerts[0]}", timeout=SEEN)
    await expect(summary).to_contain_text(f"tenant {report.tenant_id}")
    details = page.frame_locator("#user-metadata-details").locator("body")
    defender = details.locator(f'a[href="https://security.microsoft.com/alerts/{report.alerts[0]}"]')
    await expect(defender).to_have_count(1, timeout=SEEN)

    trail = page.frame_locator("#user-metadata-current-details").locator("body")
    facts = "Stage: closed · Verdict: true positive · Connector: Contoso Hybrid"
    await expect(trail).to_contain_text(facts, timeout=SEEN)
    await expect(trail).to_contain_text("Nothing waits for a decision.")
    await expect(trail.locator("li", has_text=_label(rejected))).to_contain_text(
        f"{ANALYST} rejected {_label(rejected)}: “scenario analyst rejects” (plan {report.plan_hash})"
    )
    for record in approved:
        label = f"{_label(record)} {record.action.target}"
        await expect(trail.locator("li", has_text=label)).to_contain_text(
            f"{ANALYST} approved {label} (plan {report.plan_hash})"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "ui-case.png", full_page=True)


async def test_the_event_history_names_each_action_its_target_and_approver(ui_case: UiCase, page: Page):
    _, approved = _decided(ui_case.report)
    await page.goto(f"{ui_case.page_url}/history")
    for record in approved:
        summary = f"{_label(record)}: {record.action.target}, approved by {ANALYST}"
        await expect(page.get_by_text(summary).first).to_be_visible(timeout=SEEN)
    await page.screenshot(path=ARTIFACTS / "ui-case-history.png", full_page=True)


async def test_the_workflow_list_filters_on_verdict_stage_and_pending_approvals(ui_case: UiCase, page: Page):
    closed = 'QuellVerdict = "true_positive" AND QuellStage = "closed" AND QuellPendingApproval = false'
    await page.goto(f"{ui_case.ui}/namespaces/default/workflows?query={quote(closed)}")
    await expect(page.get_by_text(ui_case.case).first).to_be_visible(timeout=SEEN)
    await page.screenshot(path=ARTIFACTS / "ui-case-list.png", full_page=True)

    waiting = "QuellPendingApproval = true"
    await page.goto(f"{ui_case.ui}/namespaces/default/workflows?query={quote(waiting)}")
    await expect(page.get_by_role("heading", name="No Workflows Found")).to_be_visible(timeout=SEEN)
