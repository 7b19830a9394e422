"""Imports run one way: workers → activities → workflows and config; production code never reaches the emulator.

Workflows may import activities' input and output types, but only inside
`workflow.unsafe.imports_passed_through()`. The emulator side (the emulator and the scenario and demo
runners that drive it) is reached only from the `quell emulator`, `quell scenario` and `quell demo`
commands, which need the `emulator` extra.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
EMULATOR_SIDE = ("emulator", "workers.scenarios", "workers.demo")
EMULATOR_COMMANDS = {"emulator", "demo", "scenario_run", "scenario_check"}  # functions in workers/cli.py
EXTRA_MODULES = {"emulator", "duckdb", "duckdb_kql"}


@dataclass(frozen=True)
class Import:
    where: str
    module: str
    function: str | None
    passed_through: bool

    def reaches(self, *targets: str) -> bool:
        return any(self.module == t or self.module.startswith(t + ".") for t in targets)


def _is_passed_through(node: ast.With) -> bool:
    return any(ast.unparse(item.context_expr) == "workflow.unsafe.imports_passed_through()" for item in node.items)


def _imports(node: ast.AST, where: str, function: str | None = None, passed: bool = False) -> list[Import]:
    found = []
    for child in ast.iter_child_nodes(node):
        at = f"{where}:{getattr(child, 'lineno', '?')}"
        if isinstance(child, ast.Import):
            found += [Import(at, alias.name, function, passed) for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            assert child.level == 0, f"{at}: relative import (these rules read absolute imports only)"
            found += [Import(at, f"{child.module}.{alias.name}", function, passed) for alias in child.names]
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += _imports(child, where, function or child.name, passed)
        else:
            found += _imports(child, where, function, passed or (isinstance(child, ast.With) and _is_passed_through(child)))
    return found


def imports_of(*packages: str) -> list[Import]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            found += _imports(ast.parse(path.read_text(), where), where)
    return found


def test_activities_import_neither_workers_nor_the_emulator():
    assert [i.where for i in imports_of("activities") if i.reaches("workers", "emulator")] == []


def test_workflows_import_activities_only_passed_through_and_never_workers_or_the_emulator():
    offenders = [
        i.where
        for i in imports_of("workflows")
        if i.reaches("workers", "emulator") or (i.reaches("activities") and not i.passed_through)
    ]
    assert offenders == []


def test_config_imports_neither_activities_nor_workers_nor_the_emulator():
    assert [i.where for i in imports_of("config") if i.reaches("activities", "workers", "emulator")] == []


def test_production_code_reaches_the_emulator_side_only_from_its_cli_commands():
    offenders = [
        i.where
        for i in imports_of("activities", "workflows", "config", "workers")
        if i.reaches(*EMULATOR_SIDE)
        and not i.where.startswith(("workers/scenarios.py", "workers/demo.py"))
        and not (i.where.startswith("workers/cli.py") and i.function in EMULATOR_COMMANDS)
    ]
    assert offenders == []


def test_the_worker_the_intake_and_the_cli_load_nothing_of_the_emulator_extra():
    code = "import sys, workers.cli, workers.worker, workers.intake, workers.schedules; print(*sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert [m for m in loaded.stdout.split() if m.split(".")[0] in EXTRA_MODULES] == []
