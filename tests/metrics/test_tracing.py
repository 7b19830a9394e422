"""Tracing is off by default, adds Temporal's TracingInterceptor when on, and without OpenTelemetry
says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from temporalio.contrib.opentelemetry import TracingInterceptor

from config.settings import TracingSettings
from workers.tracing import tracing_interceptors

ROOT = Path(__file__).parents[2]


def test_tracing_is_off_by_default_and_on_adds_the_interceptor():
    assert tracing_interceptors(TracingSettings()) == []
    (interceptor,) = tracing_interceptors(TracingSettings(enabled=True))
    assert isinstance(interceptor, TracingInterceptor)


def test_tracing_without_opentelemetry_names_what_to_install():
    # None in sys.modules makes the import fail exactly as in an environment without the package.
    code = ("import sys; sys.modules['opentelemetry'] = None; "
            "from config.settings import TracingSettings; from workers.tracing import tracing_interceptors; "
            "tracing_interceptors(TracingSettings(enabled=True))")
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0
    assert "TracingUnavailable: tracing.enabled = true needs OpenTelemetry: pip install 'quell[tracing]'" in ran.stderr
