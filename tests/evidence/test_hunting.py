"""The hunting parameter renderer: typed literals only, and a hostile value matches only itself."""

from __future__ import annotations

import base64

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb_kql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.hunting import (
    LINE_SEPARATORS,
    CatalogueError,
    ParameterError,
    load_catalogue,
    render,
    string_literal,
)

HOSTILE_FRAGMENTS = ['"', "\\", "\\\"", "\n", "\r", "\r\n", "//", "|", ";", "'", "`", " or 1==1", "*/", "/*",
                     "é", "名前", "🙂", "\u2028", "\t", "\x1b", "\u200b", "let x = 1;", "\\n", "$left", "${i}"]
hostile = st.lists(
    st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)),
    max_size=8,
).map("".join)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def con() -> Any:
    return duckdb_kql.connect()


def names_table(con: Any, values: list[str]) -> None:
    con.execute("CREATE OR REPLACE TABLE T (Name VARCHAR)")
    if values:
        con.executemany("INSERT INTO T VALUES (?)", [[v] for v in values])


def base64_encoded(value: str) -> bool:
    """Line separators travel base64-encoded; duckdb-kql 1.1.2 decodes non-ASCII there wrongly,
    so for those values the emulator can only prove that nothing else matches."""
    return bool(LINE_SEPARATORS & set(value))


@FAST
@given(value=hostile)
def test_a_string_parameter_round_trips_exactly(con: Any, value: str) -> None:
    query = render("declare query_parameters(p:string);\nprint v = p", {"p": value})
    if base64_encoded(value):
        literal = query.split("base64_decode_tostring(\"", 1)[1].split("\"", 1)[0]
        assert base64.b64decode(literal).decode("utf-8") == value
    else:
        assert duckdb_kql.kql(con, query).fetchall() == [(value,)]


@FAST
@given(value=hostile, others=st.lists(hostile, max_size=4))
def test_a_hostile_string_matches_only_itself(con: Any, value: str, others: list[str]) -> None:
    decoys = [value + "x", "x" + value, value[:-1], "", '"', "\\", *others]
    names_table(con, [value, *decoys])
    query = render("declare query_parameters(p:string);\nT | where Name == p | project Name", {"p": value})
    rows = duckdb_kql.kql(con, query).fetchall()
    assert all(row == (value,) for row in rows)
    if not base64_encoded(value):
        assert len(rows) == 1 + sum(d == value for d in decoys)


@FAST
@given(values=st.lists(hostile, max_size=5), decoys=st.lists(hostile, max_size=5))
def test_a_hostile_list_matches_only_its_items(con: Any, values: list[str], decoys: list[str]) -> None:
    names_table(con, [*values, *decoys])
    query = render("declare query_parameters(p:dynamic);\nT | where Name in (p) | project Name", {"p": values})
    found = [row[0] for row in duckdb_kql.kql(con, query).fetchall()]
    expected = [v for v in [*values, *decoys] if v in values]
    if any(map(base64_encoded, values)):
        assert set(found) <= set(values)
    else:
        assert sorted(found) == sorted(expected)


def test_the_designs_injection_example_matches_nothing(con: Any) -> None:
    names_table(con, ["alice", 'x" or 1==1 //'])
    query = render("declare query_parameters(p:string);\nT | where Name == p | count", {"p": 'x" or 1==1 //'})
    assert duckdb_kql.kql(con, query).fetchall() == [(1,)]
    query = render("declare query_parameters(p:string);\nT | where Name == p | count", {"p": 'x\\" or 1==1 //'})
    assert duckdb_kql.kql(con, query).fetchall() == [(0,)]


def test_only_line_separators_travel_base64_encoded() -> None:
    assert string_literal("a\u2028b").startswith("base64_decode_tostring(")
    assert string_literal("a\x1bb") == '"a\x1bb"'
    assert string_literal('say "hi"\n\t\\') == '"say \\"hi\\"\\n\\t\\\\"'


@pytest.mark.parametrize(
    ("kind", "value", "literal"),
    [
        ("long", 42, "42"),
        ("long", -(2**63), str(-(2**63))),
        ("real", 0.25, "0.25"),
        ("bool", True, "true"),
        ("datetime", datetime(2026, 11, 20, 10, 0, tzinfo=UTC), "datetime(2026-11-20T10:00:00.000000Z)"),
        ("datetime", datetime(2026, 11, 20, 11, 0, tzinfo=timezone(timedelta(hours=1))),
         "datetime(2026-11-20T10:00:00.000000Z)"),
        ("dynamic", ["a", 1, True], 'dynamic(["a", 1, true])'),
        ("dynamic", [], "dynamic([])"),
    ],
)
def test_typed_literals(kind: str, value: Any, literal: str) -> None:
    assert render(f"declare query_parameters(p:{kind});\nprint p", {"p": value}) == f"let p = {literal};\nprint p"


def test_typed_literals_evaluate(con: Any) -> None:
    at = datetime(2026, 11, 20, 10, 0, 5, 250000, tzinfo=UTC)
    query = render(
        "declare query_parameters(n:long, r:real, b:bool, t:datetime);\nprint n, r, b, t",
        {"n": 7, "r": 1.5, "b": False, "t": at},
    )
    assert duckdb_kql.kql(con, query).fetchall() == [(7, 1.5, False, at.replace(tzinfo=None))]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("string", 5),
        ("long", "5"),
        ("long", True),
        ("long", 2**63),
        ("real", float("nan")),
        ("bool", 1),
        ("datetime", datetime(2026, 11, 20)),  # naive: which zone?
        ("datetime", "2026-11-20"),
        ("dynamic", "abc"),
        ("dynamic", [{"nested": 1}]),
        ("string", "a\x00b"),
        ("string", "a\ud800b"),
    ],
)
def test_values_of_the_wrong_type_are_refused(kind: str, value: Any) -> None:
    with pytest.raises(ParameterError):
        render(f"declare query_parameters(p:{kind});\nprint p", {"p": value})


def test_missing_and_undeclared_parameters_are_refused() -> None:
    with pytest.raises(ParameterError):
        render("declare query_parameters(a:long, b:long);\nprint a", {"a": 1})
    with pytest.raises(ParameterError):
        render("declare query_parameters(a:long);\nprint a", {"a": 1, "b": 2})


def test_catalogue_refuses_a_query_without_declaration(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "id: 5b0f7a43-3f5e-4bd4-a1f2-0b8a1f3b9c11\nname: x\ndescription: x\n"
        "requiredDataConnectors: [{connectorId: MicrosoftThreatProtection, dataTypes: [EmailEvents]}]\n"
        "tactics: []\nrelevantTechniques: []\nversion: 1.0.0\n"
        "query: |\n  let p = \"x\";\n  EmailEvents | where NetworkMessageId == p\n"
    )
    with pytest.raises(CatalogueError):
        load_catalogue(tmp_path)


def test_catalogue_refuses_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "id: 5b0f7a43-3f5e-4bd4-a1f2-0b8a1f3b9c11\nname: x\ndescription: x\nseverity: high\n"
        "requiredDataConnectors: [{connectorId: MicrosoftThreatProtection, dataTypes: [EmailEvents]}]\n"
        "tactics: []\nrelevantTechniques: []\nversion: 1.0.0\n"
        "query: |\n  declare query_parameters(p:string);\n  EmailEvents | where NetworkMessageId == p\n"
    )
    with pytest.raises(CatalogueError):
        load_catalogue(tmp_path)
