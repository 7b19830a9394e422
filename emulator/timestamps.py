"""Date-times as the emulator writes them (parsing is quell's one parser, `workflows.timestamps`)."""

from __future__ import annotations

from datetime import datetime

from workflows.timestamps import as_utc


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, fractional seconds only when there are any."""
    value = as_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"
