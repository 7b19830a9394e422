"""quell's own processes started from Python (`quell worker`, `quell intake`) with given settings,
as the tests and benchmarks that need a real process (a kill, its memory, its file descriptors) run them.

The settings travel as `QUELL_*` environment variables, secrets in the clear: the child's
environment only, never a log or an argument list (which `ps` shows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_jsonable_python

from config.settings import Settings

QUELL = str(Path(sys.executable).parent / "quell")


def _revealed(value: Any) -> Any:
    """The dumped settings with every secret's value in place of its mask."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    return value


def quell_environment(settings: Settings) -> dict[str, str]:
    """This process's environment (e.g. SSL_CERT_FILE) plus `QUELL_<SECTION>` for every setting
    that differs from its default, and no config file."""
    variables = {"QUELL_CONFIG": "/nonexistent/quell.toml"}
    for name, value in settings.model_dump(exclude_defaults=True).items():
        text = value if isinstance(value, str) else json.dumps(to_jsonable_python(_revealed(value)))
        variables[f"QUELL_{name.upper()}"] = text
    return {**os.environ, **variables}


def start_quell(command: str, settings: Settings, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`quell <command>` with these settings; its log (stderr) goes to `log`, else nowhere. Never a
    pipe: a process that logs more than the pipe holds while nobody reads would stop."""
    with open(log or os.devnull, "ab") as stderr:
        return subprocess.Popen([QUELL, command], env=quell_environment(settings),
                                stdout=subprocess.DEVNULL, stderr=stderr)
