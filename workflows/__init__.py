"""Deterministic workflow code: the case workflow, grading, planning, approval gates, types."""

TASK_QUEUE = "quell-cases"
