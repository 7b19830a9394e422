"""Judge a scenario result against its `expected` block (docs/scenarios.md "How expected is judged").

`judge` returns one readable line per failure; an empty list means the scenario passed. Whatever
the block says, a case also keeps quell's tenant-call budget before its verdict (`tenant_calls`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from emulator.quotas import HUNTING
from emulator.scenario import ExcludedAction, Expected
from workflows.timestamps import parse_iso

EXECUTED = ("done", "already_done")
MAX_HUNTING_CALLS = 3
"""Advanced hunting calls a case makes before its verdict at most (Microsoft allows ~45 a minute
per tenant; a retried query counts once)."""
READ_VERBS = ("graph:GET ", "exo:Get-", "exo:Search-", HUNTING, "graph:POST /security/auditLog/queries")
_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^([A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*$")


def judge(expected: Expected | dict[str, Any], result: dict[str, Any]) -> list[str]:
    want = expected if isinstance(expected, Expected) else Expected.model_validate(expected)
    failures: list[str] = []
    if result.get("cases_started", 1) > 1:
        failures.append(f"cases_started: the alert deliveries started {result['cases_started']} cases, not 1")
    if want.verdict is not None and result.get("verdict") != want.verdict:
        failures.append(f"verdict: expected {want.verdict}, got {result.get('verdict')}")
    if want.case_status is not None and result.get("case_status") != want.case_status:
        failures.append(f"case_status: expected {want.case_status}, got {result.get('case_status')}")
    if want.connector is not None and not scalar_equal(want.connector, result.get("connector")):
        failures.append(f"connector: expected {want.connector!r}, got {result.get('connector')!r}")
    failures += _findings(want, result)
    executed = [a for a in result.get("actions") or [] if a.get("status") in EXECUTED]
    failures += _actions(want, executed)
    failures += _order(want, executed)
    if want.alert is not None:
        failures += partial_match(want.alert, result.get("alert"), "alert")
    if want.tenant is not None:
        failures += partial_match(want.tenant, result.get("tenant"), "tenant")
    failures += _budget(result.get("tenant_calls"))
    return failures


def tenant_calls(calls: Iterable[dict[str, Any]], before: datetime | None) -> dict[str, Any]:
    """The emulator's call log before `before` (the case's first action; None: the whole log) as
    the budget reads it: every call, the distinct hunting queries, and the reads answered alike
    twice (the same request, body and audit records: a retried failure is no second read)."""
    made = [c for c in calls if before is None or (parse_iso(c["at"]) or before) < before]
    reads = [c for c in made if str(c["api"]).startswith(READ_VERBS) and 200 <= c["status"] < 300]
    hunting = {c.get("body_sha256") for c in made if c["api"] == HUNTING}
    seen = Counter(
        json.dumps([c["api"], c.get("path"), c.get("query"), c.get("parameters"), c.get("body_sha256"),
                    c.get("result_index")], sort_keys=True, default=str)
        for c in reads
    )
    twice = sorted(" ".join(str(part) for part in json.loads(key)[:3] if part) for key, n in seen.items() if n > 1)
    return {"total": len(made), "hunting": len(hunting), "duplicate_reads": twice}


def _budget(calls: dict[str, Any] | None) -> list[str]:
    if calls is None:
        return []
    failures = []
    if calls["hunting"] > MAX_HUNTING_CALLS:
        failures.append(f"tenant_calls: {calls['hunting']} hunting queries before the verdict, more than {MAX_HUNTING_CALLS}")
    if calls["duplicate_reads"]:
        failures.append(f"tenant_calls: read twice before the verdict: {'; '.join(calls['duplicate_reads'])}")
    return failures


def _findings(want: Expected, result: dict[str, Any]) -> list[str]:
    found = {f.get("id") for f in result.get("findings") or []}
    failures = [f"findings_include: {fid} is not among the findings ({_names(found)})"
                for fid in want.findings_include if fid not in found]
    failures += [f"findings_exclude: {fid} is among the findings" for fid in want.findings_exclude if fid in found]
    return failures


def _actions(want: Expected, executed: list[dict[str, Any]]) -> list[str]:
    failures = []
    pairing = _assign(want.actions, executed, lambda e, a: not partial_match(e, a, ""))
    for index, item in enumerate(want.actions):
        if index not in pairing:
            seen = ", ".join(f"{a.get('kind')} {a.get('target') or '-'}" for a in executed) or "none"
            failures.append(f"actions: no distinct executed action matches {_show(item)} (executed: {seen})")
    for item in want.actions_exclude:
        if isinstance(item, ExcludedAction):
            kind, name = item.kind, f"{item.kind} on {item.target}"
            hits = [a for a in executed if a.get("kind") == kind and _same_target(item.target, a.get("target"))]
        else:
            kind, name = item, item
            hits = [a for a in executed if a.get("kind") == kind]
        if hits:
            failures.append(f"actions_exclude: {name} was executed ({', '.join(str(a.get('target') or '-') for a in hits)})")
    return failures


def _same_target(wanted: str, actual: Any) -> bool:
    """Targets name objects as Exchange and Entra do: case-insensitively."""
    return isinstance(actual, str) and wanted.strip().casefold() == actual.strip().casefold()


def _order(want: Expected, executed: list[dict[str, Any]]) -> list[str]:
    failures = []
    for first, second in want.order:
        before = [a for a in executed if a.get("kind") == first]
        after = [a for a in executed if a.get("kind") == second]
        if not before or not after:
            continue  # holds trivially; `actions` says what must run
        finishes = [_time(a.get("finished_at")) for a in before]
        starts = [_time(a.get("started_at")) for a in after]
        if None in finishes or None in starts:
            failures.append(f"order: {first} before {second}: an executed action has no finished_at/started_at")
        elif max(finishes) > min(starts):  # type: ignore[type-var]
            failures.append(
                f"order: {first} finished at {max(finishes)} (UTC), after {second} started at {min(starts)}"  # type: ignore[type-var]
            )
    return failures


# --------------------------------------------------------------------------- partial match


def partial_match(expected: Any, actual: Any, path: str) -> list[str]:
    """Failures of `actual` against `expected` by docs/scenarios.md's partial-match rules (empty: match)."""
    where = path or "value"
    if expected is None:  # null matches null, an absent key, "" or []
        return [] if actual in (None, "", []) else [f"{where}: expected null, got {_show(actual)}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping {_show(expected)}, got {_show(actual)}"]
        failures = []
        for key, value in expected.items():
            failures += partial_match(value, actual.get(key), f"{path}.{key}" if path else str(key))
        return failures
    if isinstance(expected, list):
        return _list_match(expected, actual, where)
    if not scalar_equal(expected, actual):
        return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _list_match(expected: list[Any], actual: Any, where: str) -> list[str]:
    items = [] if actual is None else actual
    if not isinstance(items, list):
        return [f"{where}: expected a list {_show(expected)}, got {_show(actual)}"]
    if not expected:
        return [] if not items else [f"{where}: expected an empty list, got {_show(items)}"]
    if any(isinstance(e, dict) for e in expected):
        pairing = _assign(expected, items, lambda e, a: not partial_match(e, a, ""))
        return [f"{where}: no distinct item matches {_show(e)} (items: {_show(items)})"
                for i, e in enumerate(expected) if i not in pairing]
    pairing = _assign(expected, items, lambda e, a: not partial_match(e, a, ""))
    if len(items) != len(expected) or len(pairing) != len(expected):
        return [f"{where}: expected the items {_show(expected)} in any order, got {_show(items)}"]
    return []


def scalar_equal(expected: Any, actual: Any) -> bool:
    """Equal, with strings case-sensitive except e-mail addresses and domains, and date-times by instant."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, str) and isinstance(actual, str):
        if expected == actual:
            return True
        if _is_address_or_domain(expected) and _is_address_or_domain(actual):
            return expected.casefold() == actual.casefold()
        when, other = parse_iso(expected), parse_iso(actual)
        return when is not None and when == other
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    return expected == actual and type(expected) is type(actual)


def _is_address_or_domain(text: str) -> bool:
    return bool(_EMAIL.match(text) or _DOMAIN.match(text))


def _assign(expected: list[Any], actual: list[Any], fits: Callable[[Any, Any], bool]) -> dict[int, int]:
    """A maximum matching of expected items to distinct actual items (augmenting paths)."""
    edges = [[j for j, a in enumerate(actual) if fits(e, a)] for e in expected]
    owner: dict[int, int] = {}

    def place(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or place(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        place(i, set())
    return {i: j for j, i in owner.items()}


def _time(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else None


def _names(ids: set[Any]) -> str:
    return ", ".join(sorted(str(i) for i in ids)) or "none"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."
