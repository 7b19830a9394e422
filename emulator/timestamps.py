"""ISO 8601 date-times as scenarios and Microsoft's APIs write them: parse, format, recognise."""

from __future__ import annotations

import re
from datetime import datetime, timezone

# A date and a time (date-only strings are not date-times); an optional offset, UTC when absent.
_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_datetime(text: str) -> datetime | None:
    """The aware UTC date-time `text` spells, or None when it is not an ISO 8601 date-time."""
    match = _DATETIME.match(text.strip())
    if match is None:
        return None
    fraction = (match["fraction"] or "")[:6]  # Defender writes 7 digits; Python keeps 6
    offset = match["offset"] or "Z"
    offset = "+00:00" if offset in ("Z", "z") else offset
    if len(offset) == 3:
        offset += ":00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        parsed = datetime.fromisoformat(
            f"{match['date']}T{match['time']}{'.' + fraction.ljust(6, '0') if fraction else ''}{offset}"
        )
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Naive date-times are UTC (scenarios and DuckDB write them so)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, fractional seconds only when there are any."""
    value = as_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"
