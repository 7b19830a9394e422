"""The one timestamp parser reads every shape Graph, Exchange, hunting and scenarios write."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from workflows.timestamps import parse_iso, parse_timestamp

INSTANT = datetime(2026, 11, 20, 9, 40, 12, 123456, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "2026-11-20T09:40:12.123456Z",
    "2026-11-20T09:40:12.1234567Z",        # Defender's seven fractional digits
    "2026-11-20T10:40:12.123456+01:00",
    "2026-11-20T10:40:12.123456+0100",
    "2026-11-20 09:40:12.123456",          # no offset: UTC
])
def test_iso_date_times_in_every_written_shape(text):
    assert parse_iso(text) == INSTANT
    assert parse_timestamp(text) == INSTANT


@pytest.mark.parametrize("text", ["2026-11-20", "P7D", "yesterday", "", "/Date(1795167612123)/"])
def test_iso_refuses_what_is_not_an_iso_date_time(text):
    assert parse_iso(text) is None


def test_api_values_also_come_as_datetimes_and_older_exchange_dates():
    assert parse_timestamp("/Date(1795167612123)/") == datetime(2026, 11, 20, 9, 40, 12, 123000, tzinfo=UTC)
    assert parse_timestamp(datetime(2026, 11, 20, 9, 40, 12, 123456)) == INSTANT
    assert parse_timestamp(INSTANT.astimezone(timezone(timedelta(hours=-5)))) == INSTANT
    assert parse_timestamp(None) is None and parse_timestamp("") is None and parse_timestamp(17) is None
