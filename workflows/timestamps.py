"""Timestamps as Graph, Exchange, advanced hunting and scenario files write them: the one parser.

Pure (the workflow sandbox imports it): activities read API values with `parse_timestamp`,
grading reads its own hour keys, and the emulator recognises date-times in scenarios and
requests with `parse_iso`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# A date and a time (a date alone is not a date-time); an optional offset, UTC when absent.
_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_MS_DATE = re.compile(r"^/Date\((-?\d+)\)/$")


def as_utc(value: datetime) -> datetime:
    """Naive date-times are UTC (Graph, scenarios and DuckDB write them so)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_iso(text: str) -> datetime | None:
    """The aware UTC date-time `text` spells in ISO 8601, or None when it is not one."""
    match = _ISO.match(text.strip())
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
    return as_utc(parsed)


def parse_timestamp(value: object) -> datetime | None:
    """A timestamp as an API returned it, in UTC: a datetime, an ISO 8601 string (Graph, EXO
    REST, advanced hunting) or `/Date(ms)/` (older EXO serialisation); None when empty or not one."""
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    if match := _MS_DATE.match(value.strip()):
        return datetime.fromtimestamp(int(match[1]) / 1000, tz=UTC)
    return parse_iso(value)
