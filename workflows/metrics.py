"""quell's metrics from inside the case workflow, through the SDK's workflow meter.

The workflow meter records nothing while a history replays, so each metric counts what happened
once, not every time a worker rebuilds a case from its history. Recording a metric issues no
command, so it needs no `workflow.patched` gate. The worker's runtime serves them (workers/metrics.py)
with the labels the SDK adds (namespace, task_queue, workflow_type).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.types import CaseReport


def case_started(tenant_id: str) -> None:
    workflow.metric_meter().create_counter(
        "quell_cases_started", "Cases started (one per connector case run)"
    ).add(1, {"tenant": tenant_id})


def verdict_reached(verdict: str, elapsed: timedelta) -> None:
    workflow.metric_meter().create_histogram_timedelta(
        "quell_time_to_verdict", "From the case's start to its verdict", "duration"
    ).record(elapsed, {"verdict": verdict})


def evidence_unavailable(source: str) -> None:
    workflow.metric_meter().create_counter(
        "quell_evidence_unavailable", "Evidence sources that failed after their retries, by source"
    ).add(1, {"source": source})


def case_closed(report: CaseReport) -> None:
    """The case by verdict and status, and every planned action by kind and final status."""
    meter = workflow.metric_meter()
    meter.create_counter("quell_cases_closed", "Cases closed, by verdict and status").add(
        1, {"verdict": report.verdict, "status": report.case_status}
    )
    actions = meter.create_counter("quell_actions", "Planned actions at the close of their case, by kind and status")
    for record in report.actions:
        actions.add(1, {"kind": record.action.kind, "status": record.status})
