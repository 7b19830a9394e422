"""The repository stands alone: nothing in it reads or links to a folder beside the checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Spelled in two parts so that this file does not match itself.
OUTSIDE = ("../" + "shared", '"shared" / "' + "scenarios")


def tracked_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode().split("\0")
    return [ROOT / n for n in names if n]


def test_no_file_references_a_folder_beside_the_checkout() -> None:
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        offenders += [
            f"{path.relative_to(ROOT)}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if any(marker in line for marker in OUTSIDE)
        ]
    assert not offenders, f"these lines reach outside the repository: {offenders}"


def test_the_guard_sees_a_reference() -> None:
    line = 'SCENARIO = Path(__file__).parents[3] / "shared" / ' + '"scenarios" / "x.yaml"'
    assert any(marker in line for marker in OUTSIDE)
    assert any(marker in "see ../" + "shared/docs" for marker in OUTSIDE)
