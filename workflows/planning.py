"""Remediation planning: verdict and evidence in, an ordered plan of approvable actions out.

Pure and deterministic (the case workflow calls it, so it must replay identically): no I/O, no
clock; "now" is when the evidence was collected. The rules are docs/scenarios.md "What each verdict
plans" and "The whole playbook". Order: the alert comment, then contain → eradicate → recover →
harden, and `classify_alert` last. Ids `a1`, `a2`, … follow that order. Every action names the
findings behind it in `reason`, carries the approval policy for its kind, and lists in `requires`
the actions that must be executed and verified first: nothing is unblocked before the alerted
connector's containment is done (before version 2, the eradication steps too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflows import grading
from workflows.audit import connector_verb
from workflows.changes import NOT_CONFIGURATION, is_creation
from workflows.types import (
    ActionParams,
    CaseInput,
    ClassifyParams,
    CommentParams,
    ConnectorChange,
    ConnectorConfig,
    ConnectorParams,
    Determination,
    Evidence,
    Finding,
    MailboxGrant,
    MailboxPermissionParams,
    MailForwardingParams,
    MfaParams,
    OtherConnector,
    Plan,
    PlannedAction,
    RevertParams,
    RoleAssignmentParams,
    Stage,
    Suspect,
    TransportRuleParams,
    UnblockConnectorParams,
    UnblockSenderParams,
    UserParams,
    Verdict,
)

# The verdict rules' indicator groups, from grading, for citing findings and naming what is missing.
CONTROL_INDICATORS = grading.CONTROL_INDICATORS
ABUSE_INDICATORS = grading.ABUSE_INDICATORS

V1_NOT_PROPERTIES = frozenset(
    {"identity", "confirm", "force", "erroraction", "warningaction", "verbose", "debug", "whatif",
     "domaincontroller"}
)
"""What a revert left alone before version 2 (it restored Enabled and Comment too); cases begun
before version 2 replay with it. Since then: `changes.NOT_CONFIGURATION` (rule 2)."""


def plan(case: CaseInput, verdict: Verdict, evidence: Evidence | None, v2: bool = True) -> Plan:
    """The remediation plan for this case (`evidence` is None when the connector was unresolved).
    `v2=False` only for cases begun before version 2 (docs/architecture.md, patching)."""
    builder = _Builder(case)
    if evidence is None or verdict.kind == "needs_review":
        _needs_review(builder, case, verdict, evidence)
    elif verdict.kind == "true_positive":
        _true_positive(builder, case, verdict, evidence, v2)
    else:
        _benign_or_false(builder, case, verdict, evidence)
    return Plan(actions=builder.actions)


# --------------------------------------------------------------------------- per verdict


def _true_positive(b: _Builder, case: CaseInput, verdict: Verdict, evidence: Evidence, v2: bool) -> None:
    connector = evidence.connector
    b.comment(_comment(verdict, connector.name))

    contain, unblockable = _contain_alerted(b, verdict, evidence, v2)
    for other in verdict.others:
        _contain_other(b, verdict, other)
    _disable_transport_rules(b, verdict)

    eradicated: list[str] = []
    for suspect in verdict.suspects:
        why = f"{suspect.upn} {_suspect_because(suspect, verdict)}"
        user = suspect.object_id or suspect.upn
        eradicated.append(b.add(
            "eradicate", suspect.upn, UserParams(kind="reset_admin_password", user=user),
            f"{why}: reset its password (changed at next sign-in) so the attacker loses it.",
        ))
        eradicated.append(b.add(
            "eradicate", suspect.upn, UserParams(kind="revoke_sessions", user=user),
            f"{why}: revoke its sign-in sessions and refresh tokens so a stolen session stops working.",
        ))
    _remove_footholds(b, verdict)

    # Version 2 (rule 3): only the alerted connector's containment gates an unblock.
    after = [contain] if v2 else [contain, *eradicated]
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
    if verdict.suspects:
        who = "Suspect admin" if v2 else "Suspect acting admin"
        b.add(
            "harden", "", MfaParams(report_only=case.mfa_report_only),
            f"{who} {', '.join(s.upn for s in verdict.suspects)} held an admin role: require MFA for admin roles "
            "(created report-only, so it cannot lock admins out before it is reviewed).",
        )
    b.add(
        "report", "",
        ClassifyParams(
            alert_id=case.alert.alert_id, status="resolved", classification="truePositive",
            determination=_tp_determination(verdict),
        ),
        f"True positive{_cite(verdict, *CONTROL_INDICATORS, *ABUSE_INDICATORS)}.",
    )


def _contain_alerted(b: _Builder, verdict: Verdict, evidence: Evidence, v2: bool) -> tuple[str, bool]:
    """Contain the alerted connector: (the containing action's id, whether it may be unblocked)."""
    connector = evidence.connector
    reviewed = verdict.history.changes
    suspects = {s.upn for s in verdict.suspects}
    attacker_creation = next(
        (r.change for r in reviewed if is_creation(r.change) and _key(r.change.actor) in suspects), None
    )
    unauthorized = [r.change for r in reviewed if not is_creation(r.change) and not r.ticket]
    disable = ConnectorParams(kind="disable_connector", identity=connector.guid, direction=connector.direction)
    if attacker_creation is not None:
        created = attacker_creation
        why = (
            f"{connector.name} was created on {_when(created.at)} by {created.actor}, "
            f"{_actor_problem(created.actor, verdict)}{_cite(verdict, 'connector_created', *CONTROL_INDICATORS)}"
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
        return contain, False
    if unauthorized:
        cite = _cite(verdict, "connector_modified", *CONTROL_INDICATORS)
        return _revert_or_disable(b, connector, unauthorized, evidence.changes, cite, v2)
    return b.add(
        "contain", connector.name, disable,
        f"{connector.name} carries attack mail{_cite(verdict, *CONTROL_INDICATORS, *ABUSE_INDICATORS)} "
        "but was neither created nor changed without approval in the lookback, so there is no "
        "change to undo: disable it to contain it.",
    ), False


def _contain_other(b: _Builder, verdict: Verdict, other: OtherConnector) -> None:
    """Rule 6: another connector is contained like the alerted one, but by disabling or reverting
    only (never removed, never unblocked by the case)."""
    connector = other.connector
    disable = ConnectorParams(kind="disable_connector", identity=connector.guid, direction=connector.direction)
    created = [r.change for r in other.changes if is_creation(r.change) and not r.ticket]
    unauthorized = [r.change for r in other.changes if not is_creation(r.change) and not r.ticket]
    cite = _cite(verdict, "other_connector_suspicious")
    if created:
        first = created[0]
        b.add("contain", connector.name, disable,
              f"{connector.name} was created on {_when(first.at)} by {first.actor} without an approved change{cite}: "
              "disable it (removing it is left to an analyst).")
        return
    _revert_or_disable(b, connector, unauthorized, other.records, cite, v2=True)


def _revert_or_disable(
    b: _Builder, connector: ConnectorConfig, unauthorized: list[ConnectorChange], records: list[ConnectorChange],
    cite: str, v2: bool,
) -> tuple[str, bool]:
    """Revert a connector changed without approval to the values its earlier records set, or disable
    it when no earlier record sets one of them: (the action's id, whether it was a revert)."""
    restore, sources, unrevertable = _revert(unauthorized, records, v2)
    changes = "; ".join(f"{c.operation} by {c.actor} on {_when(c.at)}" for c in unauthorized)
    if unrevertable:
        return b.add(
            "contain", connector.name,
            ConnectorParams(kind="disable_connector", identity=connector.guid, direction=connector.direction),
            f"{connector.name} was changed without approval ({changes}){cite}, but no audit record before "
            f"{_when(unauthorized[0].at)} sets {', '.join(unrevertable)}, so the change cannot "
            "be reverted safely: disable the connector instead and restore it by hand.",
        ), False
    return b.add(
        "contain", connector.name,
        RevertParams(identity=connector.guid, direction=connector.direction, restore=restore),
        f"{connector.name} is an established connector changed without approval ({changes}){cite}: "
        f"restore {_restored(restore, sources)}.",
    ), True


def _disable_transport_rules(b: _Builder, verdict: Verdict) -> None:
    for rule, found in _by_subject(verdict, "admin_transport_rule_change", "transport_rule").items():
        b.add("contain", rule, TransportRuleParams(name=rule),
              f"{_records(found)} touched the mail flow rule {rule}{_cite(verdict, found[0].id)}: disable it "
              "(not delete it: it is evidence) so it stops copying or redirecting mail.")


def _remove_footholds(b: _Builder, verdict: Verdict) -> None:
    """What the suspect admins left behind: forwarding, delegates and directory roles."""
    for mailbox, found in _by_subject(verdict, "admin_mail_forwarding", "mailbox").items():
        rules = list(dict.fromkeys(s.name for f in found for s in f.of("inbox_rule") if s.name))
        also = f" and disable the inbox rule(s) {', '.join(rules)} (kept as evidence)" if rules else ""
        b.add("eradicate", mailbox, MailForwardingParams(mailbox=mailbox, inbox_rules=rules),
              f"{_records(found)} set up forwarding of {mailbox}'s mail{_cite(verdict, found[0].id)}: clear the "
              f"mailbox's forwarding{also}.")
    for mailbox, found in _by_subject(verdict, "admin_mailbox_permission", "mailbox").items():
        grants: dict[str, list[str]] = {}
        for finding in found:
            for grantee in finding.of("grantee"):
                rights = grants.setdefault(str(grantee.name), [])
                rights += [str(r.name) for r in finding.of("access_right") if r.name not in rights]
        described = "; ".join(f"{user}: {', '.join(rights)}" for user, rights in grants.items())
        b.add("eradicate", mailbox,
              MailboxPermissionParams(mailbox=mailbox, grants=[MailboxGrant(user=u, access_rights=r)
                                                               for u, r in grants.items()]),
              f"{_records(found)} granted access to {mailbox} ({described}){_cite(verdict, found[0].id)}: "
              "remove those grants.")
    for grantee, found in _by_subject(verdict, "admin_role_granted", "grantee").items():
        roles = list(dict.fromkeys(str(s.name) for f in found for s in f.of("role") if s.name))
        b.add("eradicate", grantee, RoleAssignmentParams(user=grantee, roles=roles),
              f"{_records(found)} granted {grantee} {', '.join(roles)}{_cite(verdict, found[0].id)}: remove "
              "those role assignments.")


def _by_subject(verdict: Verdict, finding_id: str, kind: str) -> dict[str, list[Finding]]:
    """Rule 12: one action per target, covering every finding (record) that names it."""
    grouped: dict[str, list[Finding]] = {}
    names: dict[str, str] = {}
    for finding in (f for f in verdict.findings if f.id == finding_id):
        for subject in finding.subjects:
            if subject.kind == kind and subject.name:
                name = names.setdefault(_key(subject.name), subject.name)
                grouped.setdefault(name, []).append(finding)
    return grouped


def _records(found: list[Finding]) -> str:
    actors = list(dict.fromkeys(str(s.name) for f in found for s in f.accounts()))
    return f"Suspect admin {', '.join(actors)}" if actors else "A suspect admin"


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


def _key(account: str) -> str:
    """Accounts compare as grading compares them (case-folded UPNs)."""
    return account.strip().casefold()


def _revert(
    unauthorized: list[ConnectorChange], records: list[ConnectorChange], v2: bool
) -> tuple[dict[str, Any], dict[str, ConnectorChange], list[str]]:
    """Each property the unauthorized changes set -> the value the latest earlier record set.

    Returns (restore, the record each value comes from, properties with no earlier record).
    Records of any age count as "earlier": the lookback limits findings, not the history. The
    values are the audit records' parameters as ConnectorChange normalised them.
    """
    left_alone = NOT_CONFIGURATION if v2 else V1_NOT_PROPERTIES
    earliest = unauthorized[0].at
    earlier = [c for c in sorted(records, key=lambda c: c.at)
               if c.at < earliest and connector_verb(c) in ("new", "set")]
    names = list(dict.fromkeys(
        name for c in unauthorized for name in c.parameters if name.casefold() not in left_alone
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


def _restored(restore: dict[str, Any], sources: dict[str, ConnectorChange]) -> str:
    return "; ".join(
        f"{name} to {_show(value)} (set by {sources[name].actor} on {_when(sources[name].at)})"
        for name, value in restore.items()
    )


def _spoofed_restricted_senders(evidence: Evidence) -> list[str]:
    spoofed = {s.casefold() for s in evidence.mail.spoofed_header_senders}
    return sorted({s.casefold() for s in evidence.blocked_senders} & spoofed)


# --------------------------------------------------------------------------- wording


def _actor_problem(actor: str, verdict: Verdict) -> str:
    suspect = next((s for s in verdict.suspects if s.upn == _key(actor)), None)
    if suspect is None or "change_by_unexpected_actor" in suspect.because:
        return "who is not a connector admin and had no approved change"
    return f"an acting admin with {', '.join(suspect.because)}"


SUSPECT_BECAUSE = {
    "change_by_unexpected_actor": "changed the connector without being a connector admin or having an approved change",
    "other_connector_suspicious": "created or changed another connector without an approved change",
    "connector_deleted": "deleted a connector without an approved change",
}


def _suspect_because(suspect: Suspect, verdict: Verdict) -> str:
    reasons = [f"{SUSPECT_BECAUSE[f]}{_cite(verdict, f)}" for f in suspect.because if f in SUSPECT_BECAUSE]
    if signs := [f for f in suspect.because if f not in SUSPECT_BECAUSE]:
        reasons.append(f"shows signs of compromise (findings: {', '.join(signs)})")
    return " and ".join(reasons)


def _tp_determination(verdict: Verdict) -> Determination:
    if verdict.suspects:
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
