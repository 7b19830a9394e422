"""Injected API failures (docs/scenarios.md `faults`): which call fails, how often, and how.

An API key names a call: `exo:Set-InboundConnector`, or `graph:POST /users/abc/revokeSignInSessions`
(the path after the version segment). A fault's `api` may use `{x}` for any one path segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.scenario import Fault


def api_matches(pattern: str, api: str) -> bool:
    """Whether a fault pattern (`exo:CMDLET` / `graph:METHOD /path/{x}`) names the call `api`."""
    pattern_service, _, pattern_rest = pattern.partition(":")
    service, _, rest = api.partition(":")
    if pattern_service != service:
        return False
    if service == "exo":
        return pattern_rest.casefold() == rest.casefold()
    pattern_method, _, pattern_path = pattern_rest.partition(" ")
    method, _, path = rest.partition(" ")
    if pattern_method.upper() != method.upper():
        return False
    wanted = pattern_path.strip("/").split("/")
    segments = path.split("?")[0].strip("/").split("/")
    return len(wanted) == len(segments) and all(
        (w.startswith("{") and w.endswith("}") and s != "") or w.casefold() == s.casefold()
        for w, s in zip(wanted, segments)
    )


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # None: every matching call


class FaultInjector:
    """Decides, call by call, which fault (if any) applies. The first matching rule with calls left wins."""

    def __init__(self, faults: list[Fault]) -> None:
        self._rules = [_Rule(f, f.times) for f in faults]

    def check(self, api: str, body: str, query: str) -> Fault | None:
        for rule in self._rules:
            fault = rule.fault
            if not api_matches(fault.api, api):
                continue
            if fault.match is not None and fault.match not in body and fault.match not in query:
                continue
            if rule.remaining is None:
                return fault
            if rule.remaining > 0:
                rule.remaining -= 1
                return fault
        return None
