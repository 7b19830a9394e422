"""Advanced hunting (Graph `security/runHuntingQuery`) over the scenario's tables, with duckdb-kql.

Rows live in `<Table>__rows` tables; each hunting table is a view of them limited to the query's
window (Defender keeps 30 days; a `Timespan` narrows it), so `EmailEvents | ...` reads what
advanced hunting would. Microsoft's tables the emulator knows exist with their documented
columns even without rows; other tables and extra columns get types from their values.

Cost: translating KQL, then parsing and planning the SQL it becomes, is most of a query's CPU
time, and every case sends the same catalogue queries with its own literals. So the leading `let`
literals are read back as bound parameters (emulator/let_parameters.py): a template is
translated and its SQL parsed once, and DuckDB plans a parameter instead of each literal (it
binds and optimizes a statement on every run, prepared or not: that part stays, and it is most of a
query's cost: above all the regular expressions `has` becomes, compiled on every run). Queries may
run on several threads at once (the Graph handler runs them off the event loop): each thread has
its own DuckDB cursor (a connection of its own, with its own window variables), never a shared one,
and DuckDB itself runs each on that thread (`threads = 1`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import threading
from decimal import Decimal
from typing import Any

import duckdb
import duckdb_kql
from duckdb_kql.engine import schema
from duckdb_kql.params import bind
from duckdb_kql.translate import CLOCK_SLOT, TranslationResult

from emulator.let_parameters import as_parameters
from emulator.timestamps import format_datetime
from workflows.timestamps import as_utc, parse_iso

RETENTION = dt.timedelta(days=30)
KEPT = 256
_FAR_FUTURE = dt.datetime(9999, 12, 31)
_PINNED = dt.datetime(2000, 1, 1)  # translations pin `now()` to a parameter; each run binds its own now

_S, _T, _L, _I, _B, _J = "VARCHAR", "TIMESTAMP", "BIGINT", "INTEGER", "BOOLEAN", "JSON"


def _columns(spec: str, **typed: str) -> dict[str, str]:
    """Columns in order from a space-separated list; all strings except Timestamp and `typed`."""
    return {name: typed.get(name, _T if name == "Timestamp" else _S) for name in spec.split()}


SCHEMAS: dict[str, dict[str, str]] = {
    "EmailEvents": _columns(
        "Timestamp NetworkMessageId InternetMessageId SenderMailFromAddress SenderFromAddress "
        "SenderDisplayName SenderObjectId SenderMailFromDomain SenderFromDomain SenderIPv4 SenderIPv6 "
        "RecipientEmailAddress RecipientObjectId Subject EmailClusterId EmailDirection DeliveryAction "
        "DeliveryLocation ThreatTypes ThreatNames DetectionMethods ConfidenceLevel BulkComplaintLevel "
        "EmailAction EmailActionPolicy EmailActionPolicyGuid AuthenticationDetails AttachmentCount UrlCount "
        "EmailLanguage Connectors OrgLevelAction OrgLevelPolicy UserLevelAction UserLevelPolicy ReportId "
        "AdditionalFields LatestDeliveryLocation LatestDeliveryAction ExchangeTransportRule DistributionList "
        "ForwardingInformation",
        BulkComplaintLevel=_I, AttachmentCount=_I, UrlCount=_I, EmailClusterId=_L, AdditionalFields=_J,
    ),
    "EmailUrlInfo": _columns("Timestamp NetworkMessageId Url UrlDomain UrlLocation ReportId"),
    "EmailAttachmentInfo": _columns(
        "Timestamp NetworkMessageId SenderFromAddress SenderDisplayName SenderObjectId RecipientEmailAddress "
        "RecipientObjectId FileName FileType SHA256 FileSize ThreatTypes ThreatNames DetectionMethods ReportId",
        FileSize=_L,
    ),
    "CloudAppEvents": _columns(
        "Timestamp ActionType Application ApplicationId AccountObjectId AccountId AccountDisplayName "
        "IsAdminOperation DeviceType OSPlatform IPAddress IsAnonymousProxy CountryCode City ISP UserAgent "
        "ActivityType ActivityObjects ObjectName ObjectType ObjectId ReportId AccountType IsExternalUser "
        "IsImpersonated IPTags IPCategory UserAgentTags RawEventData AdditionalFields AuditSource SessionData "
        "OAuthAppId UncommonForUser LastSeenForUser",
        ApplicationId=_I, IsAdminOperation=_B, IsAnonymousProxy=_B, IsExternalUser=_B, IsImpersonated=_B,
        ActivityObjects=_J, IPTags=_J, UserAgentTags=_J, RawEventData=_J, AdditionalFields=_J, SessionData=_J,
        UncommonForUser=_J, LastSeenForUser=_J,
    ),
    "IdentityLogonEvents": _columns(
        "Timestamp ActionType Application LogonType Protocol FailureReason AccountName AccountDomain AccountUpn "
        "AccountSid AccountObjectId AccountDisplayName DeviceName DeviceType OSPlatform IPAddress Port "
        "DestinationDeviceName DestinationIPAddress DestinationPort TargetDeviceName TargetAccountDisplayName "
        "Location ISP CountryCode ReportId AdditionalFields",
        Port=_I, DestinationPort=_I, AdditionalFields=_J,
    ),
    "UrlClickEvents": _columns(
        "Timestamp Url ActionType AccountUpn Workload NetworkMessageId ThreatTypes DetectionMethods IPAddress "
        "IsClickedThrough UrlChain ReportId",
        IsClickedThrough=_B, UrlChain=_J,
    ),
}

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class HuntingQueryError(ValueError):
    """The query cannot run: Graph answers 400 BadRequest with this message."""


class HuntingEngine:
    def __init__(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        self._con = duckdb_kql.connect()
        # A query's rows are few: DuckDB's own worker threads only add hand-offs (measured: ~10% more
        # CPU with two). Queries still run side by side, each on the request thread that sent it.
        self._con.execute("SET threads = 1")
        self._con.execute("SET VARIABLE hunting_start = TIMESTAMP '1970-01-01'")
        self._con.execute("SET VARIABLE hunting_end = TIMESTAMP '9999-12-31'")
        self._schemas: dict[str, dict[str, str]] = {}
        for name in sorted(set(SCHEMAS) | set(tables)):
            self._create(name, tables.get(name, []))
        self._schema = schema(self._con)  # fixed from here: rows change, columns do not
        self._templates: dict[str, tuple[TranslationResult, Any]] = {}
        self._templates_lock = threading.Lock()
        self._threads = threading.local()

    def _create(self, name: str, rows: list[dict[str, Any]]) -> None:
        schema = dict(SCHEMAS.get(name, {"Timestamp": _T}))
        for row in rows:
            for column in row:
                if column not in schema:
                    schema[column] = _infer(column, [r.get(column) for r in rows])
        self._schemas[name] = schema
        columns = ", ".join(f'"{c}" {t}' for c, t in schema.items())
        self._con.execute(f'CREATE TABLE "{name}__rows" ({columns})')
        self._con.execute(
            f'CREATE VIEW "{name}" AS SELECT * FROM "{name}__rows" WHERE "Timestamp" IS NULL OR '
            "(\"Timestamp\" >= getvariable('hunting_start') AND \"Timestamp\" <= getvariable('hunting_end'))"
        )
        self.add_rows(name, rows)

    def add_rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Append rows (JSON-shaped, Microsoft column names) to a table the engine holds."""
        if not rows:
            return
        schema = self._schemas[name]
        unknown = sorted({c for r in rows for c in r} - set(schema))
        if unknown:
            raise ValueError(f"{name}: unknown column(s) {', '.join(unknown)}")
        # NDJSON through read_json: a row per line, a column a row leaves out is null.
        with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False, encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({c: _cell(schema[c], v, name, c) for c, v in row.items()}) + "\n")
        spec = ", ".join(f"'{c}': '{t}'" for c, t in schema.items())
        try:
            self._con.execute(
                f'INSERT INTO "{name}__rows" SELECT * FROM read_json(?, format = \'newline_delimited\', '
                f"columns = {{{spec}}})",
                [handle.name],
            )
        finally:
            os.unlink(handle.name)

    def run(self, query: str, now: dt.datetime, timespan: str | None = None) -> dict[str, Any]:
        """The query's result as Graph's huntingQueryResults body (without @odata.context)."""
        start, end = _window(now, timespan)
        template, values = as_parameters(query)
        cursor = self._cursor()
        try:
            translation, statement = self._prepared(template, cursor)
            bound, unbound = bind(list(translation.declarations), values)
            if unbound:
                raise duckdb_kql.KqlSchemaError(", ".join(unbound), hint="declared query parameter with no value")
            parameters = {slot: value for slot, value in bound.items() if slot in translation.slots}
            if CLOCK_SLOT in translation.parameters:
                parameters[CLOCK_SLOT] = as_utc(now).replace(tzinfo=None)
            cursor.execute("SET VARIABLE hunting_start = ?", [start])
            cursor.execute("SET VARIABLE hunting_end = ?", [end])
            # execute, not sql(): a relation binds the statement for its types and again to run.
            cursor.execute(statement, parameters)
            columns, types = [d[0] for d in cursor.description], [str(d[1]) for d in cursor.description]
            rows = cursor.fetchall()
        except duckdb_kql.KqlError as error:
            raise HuntingQueryError(f"{type(error).__name__}: {error}") from None
        except duckdb.Error as error:
            raise HuntingQueryError(f"Query execution failed: {str(error).splitlines()[0]}") from None
        return {
            "schema": [{"Name": c, "Type": _graph_type(t)} for c, t in zip(columns, types)],
            "results": [
                {c: _out(t, v) for c, t, v in zip(columns, types, row)} for row in rows
            ],
        }

    def _prepared(self, template: str, cursor: duckdb.DuckDBPyConnection) -> tuple[TranslationResult, Any]:
        """The template's SQL (read-only, `now()` a parameter) and that SQL parsed, made once and
        kept. Threads share the parsed statement: each execution works on a copy of it."""
        prepared = self._templates.get(template)
        if prepared is None:
            translation = duckdb_kql.to_sql(template, schema=self._schema, allow_write=False, query_now=_PINNED)
            parsed = cursor.extract_statements(str(translation))
            prepared = translation, parsed[0] if len(parsed) == 1 else str(translation)
            with self._templates_lock:
                if len(self._templates) >= KEPT:  # templates are few; texts that are none must not pile up
                    del self._templates[next(iter(self._templates))]
                self._templates[template] = prepared
        return prepared

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection to the engine's database: a DuckDB connection is not to be
        shared between threads, a cursor is a connection of its own (with its own window variables)."""
        cursor = getattr(self._threads, "cursor", None)
        if cursor is None:
            cursor = self._threads.cursor = self._con.cursor()
            cursor.execute("SET TimeZone = 'UTC'")  # KQL date-times are UTC; a setting per connection
        return cursor


def _window(now: dt.datetime, timespan: str | None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] as naive UTC: the retention, narrowed by an ISO 8601 duration or start/end interval."""
    now = as_utc(now)
    start, end = now - RETENTION, None
    if timespan:
        if "/" in timespan:
            first, _, second = timespan.partition("/")
            begin, finish = parse_iso(first), parse_iso(second)
            if begin is None or finish is None:
                raise HuntingQueryError(f"Timespan {timespan!r} is not an ISO 8601 interval")
            start, end = max(start, begin), finish
        else:
            match = _DURATION.match(timespan)
            if match is None or not any(match.groups()):
                raise HuntingQueryError(f"Timespan {timespan!r} is not an ISO 8601 duration such as P7D")
            days, hours, minutes, seconds = match.groups()
            length = dt.timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0),
                                  seconds=float(seconds or 0))
            start = max(start, now - length)
    naive_end = end.replace(tzinfo=None) if end is not None else _FAR_FUTURE
    return start.replace(tzinfo=None), naive_end


def _infer(column: str, values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if column == "Timestamp":
        return _T
    if present and all(isinstance(v, bool) for v in present):
        return _B
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return _L
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "DOUBLE"
    if any(isinstance(v, (dict, list)) for v in present):
        return _J
    return _S


def _cell(kind: str, value: Any, table: str, column: str) -> Any:
    """A scenario value as the column's type wants it in JSON (read_json casts the rest)."""
    if value is None:
        return None
    if kind == _T:
        parsed = parse_iso(value) if isinstance(value, str) else None
        if parsed is None:
            raise ValueError(f"{table}.{column}: {value!r} is not an ISO 8601 date-time")
        return parsed.replace(tzinfo=None).isoformat()
    if kind == _J:
        if isinstance(value, str):
            try:
                parsed_json = json.loads(value)
            except ValueError:
                return value
            return parsed_json if isinstance(parsed_json, (dict, list)) else value
        return value
    if kind == _S:
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        return str(value)
    if kind == _B:
        if isinstance(value, str) and value.casefold() in ("true", "false"):
            return value.casefold() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{table}.{column}: {value!r} is not a boolean")
        return value
    if kind in (_L, _I):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{table}.{column}: {value!r} is not a whole number") from None
    return value


def _graph_type(duck: str) -> str:
    if duck.startswith("TIMESTAMP"):
        return "DateTime"
    if duck in ("BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "Int64"
    if duck in ("INTEGER", "SMALLINT", "TINYINT", "USMALLINT", "UTINYINT"):
        return "Int32"
    if duck == "BOOLEAN":
        return "Boolean"
    if duck in ("DOUBLE", "FLOAT") or duck.startswith("DECIMAL"):
        return "Double"
    if duck == "INTERVAL":
        return "TimeSpan"
    if duck == "JSON" or duck.endswith("[]") or duck.startswith(("STRUCT", "MAP")):
        return "Object"
    return "String"


def _out(duck: str, value: Any) -> Any:
    """A DuckDB value as Graph's JSON writes it: date-times ISO with Z, dynamic values as JSON."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.timedelta):
        return _timespan(value)
    if isinstance(value, Decimal):
        return float(value)
    if duck == "JSON" and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, (list, tuple)):
        return [_out("", v) for v in value]
    if isinstance(value, dict):
        return {k: _out("", v) for k, v in value.items()}
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _timespan(value: dt.timedelta) -> str:
    """KQL's timespan text: [-][d.]hh:mm:ss[.fffffff]."""
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{fraction:06d}0" if fraction else "")
