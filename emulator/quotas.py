"""Per-tenant API quotas (docs/scenarios.md `quotas`) and the record of early retries.

Every Graph and Exchange call belongs to one family: `hunting` (POST /security/runHuntingQuery),
`security` (Graph's alerts and incidents), `graph` (any other Graph call), `message_trace`
(Get-MessageTraceV2 and Get-MessageTraceDetailV2) or `exchange` (any other InvokeCommand). A JSON batch counts its requests
one by one, as Microsoft does, and its envelope (`POST /$batch`) not at all. A family's quota admits at most
`calls` calls in any running window of `window_s` seconds (Microsoft words its limits that way);
the next call is answered 429 with `Retry-After`, the whole seconds until the oldest call in the
window leaves it, and that app stays throttled in that family until then: its calls meanwhile are
answered 429 too and count for nothing. A refused call never enters the window.

Apart from quotas, every 429 or 503 with `Retry-After` the emulator answers (a quota's or a
scenario fault's) tells the caller to wait. The same request (method, path, query and body) sent
again before that time is up is an *early retry*; any call of the family the app sends meanwhile is
a call *while throttled* (calls already on their way when the 429 went out count too). Both are
counted per family and marked in the call log.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from emulator.faults import api_matches
from emulator.scenario import Quota, Quotas

Family = Literal["hunting", "security", "graph", "exchange", "message_trace"]
FAMILIES: tuple[Family, ...] = ("hunting", "security", "graph", "exchange", "message_trace")
HUNTING = "graph:POST /security/runHuntingQuery"
SECURITY = re.compile(r"^graph:[A-Z]+ /security/(alerts_v2|incidents)(/|$)")


def family_of(api: str) -> Family:
    """The family of a logged API key (`exo:CMDLET`, `graph:METHOD /path`)."""
    if api.startswith("exo:"):
        return "message_trace" if api.startswith("exo:Get-MessageTrace") else "exchange"
    if api_matches(HUNTING, api):
        return "hunting"
    return "security" if SECURITY.match(api) else "graph"


@dataclass
class _Ledger:
    quota: Quota | None
    admitted: deque[float] = field(default_factory=deque)
    """Times of the calls in the current window, oldest first."""
    blocked: dict[str, float] = field(default_factory=dict)
    """App -> until when the quota refuses it (after a 429 of the quota's own)."""
    told: dict[str, float] = field(default_factory=dict)
    """App -> until when any 429/503 Retry-After told it to wait."""
    told_request: dict[str, float] = field(default_factory=dict)
    """Request (app and fingerprint) -> until when a 429/503 Retry-After told it to wait."""
    calls: int = 0
    throttled: int = 0
    early_retries: int = 0
    while_throttled: int = 0


class Throttling:
    """The quotas of one tenant and what they answered. Times are `time.monotonic()` seconds."""

    def __init__(self, quotas: Quotas) -> None:
        self._ledgers = {family: _Ledger(getattr(quotas, family)) for family in FAMILIES}

    def arrived(self, family: Family, app: str, request: str, now: float) -> tuple[bool, bool]:
        """Count a call: (whether it is an early retry of `request`, whether `app` was told to wait)."""
        ledger = self._ledgers[family]
        ledger.calls += 1
        early = now < ledger.told_request.get(f"{app} {request}", -math.inf)
        throttled = now < ledger.told.get(app, -math.inf)
        ledger.early_retries += int(early)
        ledger.while_throttled += int(throttled)
        return early, throttled

    def admit(self, family: Family, app: str, now: float) -> int | None:
        """None when the quota admits the call (it enters the window), else the Retry-After seconds."""
        ledger = self._ledgers[family]
        quota = ledger.quota
        if quota is None:
            return None
        blocked = ledger.blocked.get(app, -math.inf)
        if now < blocked:
            return _whole_seconds(blocked - now)
        window = ledger.admitted
        while window and window[0] <= now - quota.window_s:
            window.popleft()
        if len(window) < quota.calls:
            window.append(now)
            return None
        wait = _whole_seconds(window[0] + quota.window_s - now)
        ledger.blocked[app] = now + wait
        return wait

    def answered(self, family: Family, app: str, request: str, now: float, status: int,
                 retry_after: str | None) -> None:
        """Record an answer: a 429 counts, and a 429/503 with Retry-After tells the app to wait."""
        ledger = self._ledgers[family]
        ledger.throttled += int(status == 429)
        if status in (429, 503) and retry_after is not None:
            until = now + float(retry_after)
            ledger.told[app] = max(ledger.told.get(app, -math.inf), until)
            ledger.told_request[f"{app} {request}"] = until

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per family: its quota (None: unlimited), calls received, 429s answered, early retries and
        calls while throttled."""
        return {
            family: {
                "quota": ledger.quota.model_dump() if ledger.quota else None,
                "calls": ledger.calls,
                "throttled": ledger.throttled,
                "early_retries": ledger.early_retries,
                "while_throttled": ledger.while_throttled,
            }
            for family, ledger in self._ledgers.items()
        }


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes a request the same request again (a retry sends it unchanged)."""
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), query.encode(), body])).hexdigest()


def _whole_seconds(seconds: float) -> int:
    """Retry-After as Microsoft sends it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))
