"""Remediation planning: verdict and evidence in, an ordered plan of approvable actions out.

Pure and deterministic (the case workflow calls it, so it must replay identically): no I/O, no
clock; "now" is when the evidence was collected. The rules are docs/scenarios.md "What each verdict
plans". Order: the alert comment, then contain → eradicate → recover → harden, and
`classify_alert` last. Ids `a1`, `a2`, … follow that order. Every action names the findings
behind it in `reason`, carries the approval policy for its kind, and lists in `requires` the
actions that must be executed and verified first: nothing is unblocked before the connector's
containment and the eradication steps are done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflows import grading
from workflows.types import (
    ActionParams,
    CaseInput,
    ClassifyParams,
    CommentParams,
    ConnectorChange,
    ConnectorParams,
    Determination,
    Evidence,
    MfaParams,
    Plan,
    PlannedAction,
    RevertParams,
    Stage,
    Subject,
    UnblockConnectorParams,
    UnblockSenderParams,
    UserParams,
    Verdict,
)

ADMIN_FINDINGS = ("admin_bruteforce_success", "admin_unusual_location")
# The verdict rules' indicator groups, from grading, for citing findings and naming what is missing.
CONTROL_INDICATORS = grading.CONTROL_INDICATORS
ABUSE_INDICATORS = grading.ABUSE_INDICATORS

# Cmdlet switches and the object being addressed, not connector properties to restore.
NOT_PROPERTIES = frozenset(
    {"identity", "confirm", "force", "erroraction", "warningaction", "verbose", "debug", "whatif",
     "domaincontroller"}
)


def plan(case: CaseInput, verdict: Verdict, evidence: Evidence | None) -> Plan:
    """The remediation plan for this case (`evidence` is None when the connector was unresolved)."""
    builder = _Builder(case)
    if evidence is None or verdict.kind == "needs_review":
        _needs_review(builder, case, verdict, evidence)
    elif verdict.kind == "true_positive":
        _true_positive(builder, case, verdict, evidence)
    else:
        _benign_or_false(builder, case, verdict, evidence)
    return Plan(actions=builder.actions)


# --------------------------------------------------------------------------- per verdict


def _true_positive(b: _Builder, case: CaseInput, verdict: Verdict, evidence: Evidence) -> None:
    connector = evidence.connector
    history = _history(verdict, evidence)
    b.comment(_comment(verdict, connector.name))

    disable = ConnectorParams(kind="disable_connector", identity=connector.guid, direction=connector.direction)
    unblockable = False
    if history.attacker_creation is not None:
        created = history.attacker_creation
        why = (
            f"{connector.name} was created on {_when(created.at)} by {created.actor}, "
            f"{_actor_problem(created.actor, history)}{_cite(verdict, 'connector_created', *CONTROL_INDICATORS)}"
        )
        contain = b.add(
            "contain", connector.name, disable,
            f"{why}. Disabling it stops its mail at once and can be undone; removal is a separate step.",
        )
        b.add(
            "contain", connector.name,
            ConnectorParams(kind="remove_connector", identity=connector.guid, direction=connector.direction),
            f"{why}. An attacker's connector has no legitimate use: remove it once it is disabled "
            "(irreversible, so it has its own approval). It is never unblocked.",
        )
    elif history.unauthorized:
        restore, sources, unrevertable = _revert(history, evidence)
        changes = "; ".join(f"{c.operation} by {c.actor} on {_when(c.at)}" for c in history.unauthorized)
        if unrevertable:
            contain = b.add(
                "contain", connector.name, disable,
                f"{connector.name} was changed without approval ({changes})"
                f"{_cite(verdict, 'connector_modified', *CONTROL_INDICATORS)}, but no audit record before "
                f"{_when(history.unauthorized[0].at)} sets {', '.join(unrevertable)}, so the change cannot "
                "be reverted safely: disable the connector instead and restore it by hand.",
            )
        else:
            prior = "; ".join(
                f"{name} to {_show(value)} (set by {sources[name].actor} on {_when(sources[name].at)})"
                for name, value in restore.items()
            )
            contain = b.add(
                "contain", connector.name,
                RevertParams(identity=connector.guid, direction=connector.direction, restore=restore),
                f"{connector.name} is an established connector changed without approval ({changes})"
                f"{_cite(verdict, 'connector_modified', *CONTROL_INDICATORS)}: restore {prior}.",
            )
            unblockable = True
    else:
        contain = b.add(
            "contain", connector.name, disable,
            f"{connector.name} carries attack mail{_cite(verdict, *CONTROL_INDICATORS, *ABUSE_INDICATORS)} "
            "but was neither created nor changed without approval in the lookback, so there is no "
            "change to undo: disable it to contain it.",
        )

    eradicated: list[str] = []
    for account in history.suspects:
        why = f"{account} {_suspect_because(account, history, verdict)}"
        user = history.object_ids.get(account, account)
        eradicated.append(b.add(
            "eradicate", account, UserParams(kind="reset_admin_password", user=user),
            f"{why}: reset its password (changed at next sign-in) so the attacker loses it.",
        ))
        eradicated.append(b.add(
            "eradicate", account, UserParams(kind="revoke_sessions", user=user),
            f"{why}: revoke its sign-in sessions and refresh tokens so a stolen session stops working.",
        ))

    after = [contain, *eradicated]
    if unblockable and evidence.blocked_connector:
        b.add(
            "recover", connector.name,
            UnblockConnectorParams(connector_id=connector.guid),
            f"Defender restricted {connector.name}{_cite(verdict, 'connector_blocked')}; once the "
            "revert is verified and the acting admin is locked out, lift the restriction so "
            "on-premises mail flows again.",
            requires=after,
        )
    for sender in _spoofed_restricted_senders(evidence):
        b.add(
            "recover", sender, UnblockSenderParams(sender_address=sender),
            f"{sender} is restricted, but it is only the header From (P2) of mail spoofed through "
            f"{connector.name}{_cite(verdict, 'p1_p2_mismatch', 'empty_sender_object_id')}; the account "
            "did not send it. Unblock once the connector is contained.",
            requires=after,
        )
    if history.suspects:
        b.add(
            "harden", "", MfaParams(report_only=case.mfa_report_only),
            f"Suspect acting admin {', '.join(history.suspects)} held an admin role: require MFA for admin roles "
            "(created report-only, so it cannot lock admins out before it is reviewed).",
        )
    b.add(
        "report", "",
        ClassifyParams(
            alert_id=case.alert.alert_id, status="resolved", classification="truePositive",
            determination=_tp_determination(verdict, history),
        ),
        f"True positive{_cite(verdict, *CONTROL_INDICATORS, *ABUSE_INDICATORS)}.",
    )


def _benign_or_false(b: _Builder, case: CaseInput, verdict: Verdict, evidence: Evidence) -> None:
    connector = evidence.connector
    b.comment(_comment(verdict, connector.name))
    benign = verdict.kind == "benign_positive"
    label = "benign (explained by approved changes or expected volume)" if benign else "a false positive"
    if evidence.blocked_connector:
        b.add(
            "recover", connector.name,
            UnblockConnectorParams(connector_id=connector.guid),
            f"The alert is {label}{_cite(verdict, 'change_approved')}, yet Defender restricted "
            f"{connector.name}: lift the restriction so its legitimate mail flows again.",
        )
    if benign:
        expected_volume = connector.name.casefold() in {
            n.casefold() for n in case.organization.expected_high_volume_connectors
        }
        classify = ClassifyParams(
            alert_id=case.alert.alert_id, status="resolved", classification="informationalExpectedActivity",
            determination="lineOfBusinessApplication" if expected_volume else "confirmedActivity",
        )
    else:
        classify = ClassifyParams(
            alert_id=case.alert.alert_id, status="resolved", classification="falsePositive",
            determination="notMalicious",
        )
    b.add("report", "", classify, f"Verdict {verdict.kind}: {'; '.join(verdict.reasons)}")


def _needs_review(b: _Builder, case: CaseInput, verdict: Verdict, evidence: Evidence | None) -> None:
    missing = _missing(verdict, evidence)
    name = evidence.connector.name if evidence is not None else None
    b.comment(_comment(verdict, name, missing))
    b.add(
        "report", "",
        ClassifyParams(alert_id=case.alert.alert_id, status="inProgress"),
        "An analyst must decide: mark the alert in progress and leave its classification unknown.",
    )


# --------------------------------------------------------------------------- the connector's history


@dataclass(frozen=True)
class _History:
    """Who touched the connector in the lookback, and which acting admins are suspect."""

    unauthorized: list[ConnectorChange]
    """Recent modifications not covered by an approved change, oldest first."""
    attacker_creation: ConnectorChange | None
    unexpected: frozenset[str]
    """Actors (keys) with a recent change that is neither theirs to make nor approved."""
    suspects: list[str]
    """Acting admins (lower-cased UPNs) made suspect by an unexpected change or an admin finding."""
    admin_findings: dict[str, list[str]]
    """Acting admin -> admin finding ids that concern it."""
    object_ids: dict[str, str]


def _history(verdict: Verdict, evidence: Evidence) -> _History:
    """Grading's reading of the audit log (`verdict.history`) and the accounts its findings name."""
    reviewed = verdict.history.changes
    actors = verdict.history.acting_admins
    unexpected = frozenset(_key(r.change.actor) for r in reviewed if r.unexpected_actor)
    object_ids = {_key(a.upn): a.object_id for a in evidence.admins if a.object_id}

    admin_findings: dict[str, list[str]] = {}
    for finding in (f for f in verdict.findings if f.id in ADMIN_FINDINGS):
        named = [a for a in actors if any(_is_account(s, a, object_ids.get(a)) for s in finding.accounts())]
        # Admin findings concern acting admins only; one that names none of them covers them all.
        for actor in named or actors:
            admin_findings.setdefault(actor, []).append(finding.id)
    suspects = [a for a in actors if a in unexpected or a in admin_findings]

    attacker_creation = next(
        (r.change for r in reviewed if grading.is_creation(r.change) and _key(r.change.actor) in suspects), None
    )
    unauthorized = [r.change for r in reviewed if not grading.is_creation(r.change) and not r.ticket]
    return _History(unauthorized, attacker_creation, unexpected, suspects, admin_findings, object_ids)


def _key(account: str) -> str:
    """Accounts compare as grading compares them (`acting_admins` holds these keys)."""
    return account.strip().casefold()


def _is_account(subject: Subject, actor: str, object_id: str | None) -> bool:
    """Whether a finding's account is this acting admin, by UPN or by object id."""
    if subject.name is not None and _key(subject.name) == actor:
        return True
    return subject.id is not None and object_id is not None and subject.id.casefold() == object_id.casefold()


def _revert(
    history: _History, evidence: Evidence
) -> tuple[dict[str, Any], dict[str, ConnectorChange], list[str]]:
    """Each property the unauthorized changes set -> the value the latest earlier record set.

    Returns (restore, the record each value comes from, properties with no earlier record).
    Records of any age count as "earlier": the lookback limits findings, not the history. The
    values are the audit records' parameters as ConnectorChange normalised them.
    """
    earliest = history.unauthorized[0].at
    earlier = [c for c in sorted(evidence.changes, key=lambda c: c.at)
               if c.at < earliest and grading.connector_verb(c) in ("new", "set")]
    names = list(dict.fromkeys(
        name for c in history.unauthorized for name in c.parameters if name.casefold() not in NOT_PROPERTIES
    ))
    restore: dict[str, Any] = {}
    sources: dict[str, ConnectorChange] = {}
    unrevertable: list[str] = []
    for name in names:
        setting = [c for c in earlier if _parameter(c, name) is not _ABSENT]
        if not setting:
            unrevertable.append(name)
            continue
        source = setting[-1]
        restore[name] = _parameter(source, name)
        sources[name] = source
    return restore, sources, unrevertable


_ABSENT = object()


def _parameter(change: ConnectorChange, name: str) -> Any:
    """A parameter's value, matching the name case-insensitively as PowerShell does."""
    for key, value in change.parameters.items():
        if key.casefold() == name.casefold():
            return value
    return _ABSENT


def _spoofed_restricted_senders(evidence: Evidence) -> list[str]:
    spoofed = {s.casefold() for s in evidence.mail.spoofed_header_senders}
    return sorted({s.casefold() for s in evidence.blocked_senders} & spoofed)


# --------------------------------------------------------------------------- wording


def _actor_problem(actor: str, history: _History) -> str:
    if _key(actor) in history.unexpected:
        return "who is not a connector admin and had no approved change"
    return f"an acting admin with {', '.join(history.admin_findings.get(_key(actor), []))}"


def _suspect_because(account: str, history: _History, verdict: Verdict) -> str:
    reasons = []
    if account in history.unexpected:
        reasons.append(f"changed the connector without being a connector admin or having an approved change"
                       f"{_cite(verdict, 'change_by_unexpected_actor')}")
    if found := history.admin_findings.get(account):
        reasons.append(f"shows signs of compromise (findings: {', '.join(found)})")
    return " and ".join(reasons)


def _tp_determination(verdict: Verdict, history: _History) -> Determination:
    if history.suspects:
        return "compromisedAccount"
    if verdict.has("malicious_attachment"):
        return "malware"
    if verdict.has("malicious_url"):
        return "phishing"
    return "other"


def _missing(verdict: Verdict, evidence: Evidence | None) -> list[str]:
    """What an analyst needs before the case can be decided."""
    missing: list[str] = []
    if evidence is None:
        missing.append("the connector: the alert's IP and message evidence matched no connector or "
                       "more than one, so no connector evidence was collected")
    else:
        missing += [f"{source}: could not be read after retries" for source in evidence.unavailable]
        if not any(verdict.has(f) for f in CONTROL_INDICATORS):
            missing.append("a control indicator (" + ", ".join(CONTROL_INDICATORS)
                           + ") showing the connector is not under the organization's control")
        if not any(verdict.has(f) for f in ABUSE_INDICATORS):
            missing.append("an abuse indicator (" + ", ".join(ABUSE_INDICATORS)
                           + ") showing the connector carries attack mail")
    return missing


def _comment(verdict: Verdict, connector: str | None, missing: list[str] | None = None) -> str:
    lines = [f"quell verdict: {verdict.kind} for connector {connector or '(unresolved)'}."]
    lines += verdict.reasons
    lines.append("Findings:" if verdict.findings else "Findings: none.")
    lines += [f"- {f.id}: {f.summary}" for f in verdict.findings]
    if missing:
        lines.append("Missing before this can be decided:")
        lines += [f"- {m}" for m in missing]
    return "\n".join(lines)


def _cite(verdict: Verdict, *finding_ids: str) -> str:
    present = [f for f in dict.fromkeys(finding_ids) if verdict.has(f)]
    return f" (findings: {', '.join(present)})" if present else ""


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _show(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


# --------------------------------------------------------------------------- assembly


class _Builder:
    """Appends actions in plan order, numbering them a1, a2, … and applying the approval policy."""

    def __init__(self, case: CaseInput) -> None:
        self._case = case
        self.actions: list[PlannedAction] = []

    def add(
        self, stage: Stage, target: str, params: ActionParams, reason: str, requires: list[str] | None = None
    ) -> str:
        """Append the action its params describe (their `kind` is the action's kind)."""
        action_id = f"a{len(self.actions) + 1}"
        self.actions.append(PlannedAction(
            id=action_id,
            kind=params.kind,
            target=target,
            stage=stage,
            reason=reason,
            policy=self._case.policy.for_action(params.kind),
            requires=list(requires or []),
            params=params,
        ))
        return action_id

    def comment(self, text: str) -> str:
        return self.add(
            "report", "", CommentParams(alert_id=self._case.alert.alert_id, comment=text),
            "Write the verdict and its findings to the alert so analysts in Defender see them.",
        )
