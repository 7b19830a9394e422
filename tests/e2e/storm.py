"""Storms of one tenant for the pacing tests: many dry-run cases of one alert at once against the
emulator, under a quota scaled from a minute to 5 seconds so that a storm takes seconds."""

from __future__ import annotations

from activities import cases
from activities.alert_parsing import from_graph_alert
from config.settings import QuotaSettings, Settings
from emulator.scenario import Quota, Quotas, Scenario, load_scenario
from tests.conftest import PROJECT_SCENARIOS
from workers.scenarios import RunOptions, scenario_settings
from workflows.types import CaseInput, CaseReport, FamilyQuota

HUNTING_QUOTA = Quotas(hunting=Quota(calls=30, window_s=5))
"""The tenant: 30 hunting calls in any 5 seconds (Microsoft's 45 a minute, scaled down)."""
PACE = FamilyQuota(per_minute=240, burst=1)
"""quell: at most 0 + 20 hunting calls in any 5 seconds, 10 under the quota: calls can arrive up to
2.5 s off their turns (a loaded test machine; the defaults keep one call a minute spare)."""
UNLIMITED = FamilyQuota(per_minute=60_000, burst=1_000)
"""Graph and Exchange, which the tests' tenant does not limit."""


def storm_scenario() -> Scenario:
    """The example's tenant in dry run: six hunting queries a case, and no approval to wait for."""
    return load_scenario(PROJECT_SCENARIOS / "tp-hijacked-hybrid-connector.yaml").model_copy(update={"mode": "dry_run"})


def storm_settings(scenario: Scenario, base_url: str, paced: bool) -> Settings:
    settings = scenario_settings(scenario, base_url, RunOptions(), {})
    settings.quotas = QuotaSettings(enabled=paced, hunting=PACE, graph=UNLIMITED, exchange=UNLIMITED)
    return settings


def storm_input(scenario: Scenario, settings: Settings) -> CaseInput:
    return cases.case_input(settings, from_graph_alert(scenario.alert, scenario.tenant.id, source="webhook"))


def outcome(report: CaseReport) -> tuple[str, str, list[str]]:
    """What a case decided: its status, verdict and findings."""
    return report.case_status, report.verdict, sorted(f.id for f in report.findings)
