"""Without the `emulator` extra, the emulator-side commands say what to install and exit 2.

Each command runs in a subprocess whose `sys.modules` marks the extra's modules as absent, which
makes importing them raise ModuleNotFoundError exactly as an environment without them does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RUN_WITHOUT = "import sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(','))); "
RUN_WITHOUT += "from workers.cli import app; app(sys.argv[2:], prog_name='quell')"


def quell_without(absent: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, absent, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("absent", "args", "command"),
    [
        ("duckdb,duckdb_kql", ["scenario", "run", "x.yaml", "--json"], "scenario run"),
        ("duckdb,duckdb_kql", ["scenario", "check", "x.yaml"], "scenario check"),
        ("duckdb,duckdb_kql", ["emulator", "--scenario", "x.yaml"], "emulator"),
        ("duckdb,duckdb_kql", ["demo"], "demo"),
        ("emulator", ["scenario", "run", "x.yaml"], "scenario run"),  # the runtime image ships no emulator/
    ],
)
def test_an_emulator_command_without_the_extra_names_what_to_install(absent, args, command):
    ran = quell_without(absent, *args)
    assert ran.returncode == 2, ran.stderr
    assert f"quell {command} needs the emulator extra: pip install 'quell[emulator]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_worker_and_intake_commands_need_no_extra():
    for command in ("worker", "intake"):
        ran = quell_without("emulator,duckdb,duckdb_kql", command, "--help")
        assert ran.returncode == 0, ran.stderr
