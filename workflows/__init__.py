"""Deterministic workflow code: the case workflow, grading, planning, approval gates, types."""
