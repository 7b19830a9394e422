"""Grading: evidence → findings → verdict, exactly as docs/scenarios.md's vocabulary and rules say.

Pure and deterministic (runs inside the workflow): no I/O, no clock but the `now` it is given.
Every rule names its threshold from `Thresholds`, so configuration changes a number, never logic.
"""

from __future__ import annotations

import ipaddress
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from workflows.changes import acting_admins, change_summary, is_creation, review
from workflows.sweep import Directory, sweep
from workflows.timestamps import parse_iso
from workflows.types import (
    AdminSignIns,
    ChangeHistory,
    ConnectorConfig,
    ConnectorResolution,
    Evidence,
    Finding,
    FindingId,
    MailStats,
    Organization,
    OtherConnector,
    Subject,
    Suspect,
    Sweep,
    Thresholds,
    Verdict,
    VerdictKind,
    split_list,
)

BASELINE_HOURS = 168
"""The volume baseline: the 168 clock hours ending with the hour that holds `now`."""

CONNECTOR_INDICATORS: tuple[FindingId, ...] = (
    "p1_p2_mismatch",
    "empty_sender_object_id",
    "volume_spike",
    "connector_created",
    "connector_modified",
)
CONTROL_INDICATORS: tuple[FindingId, ...] = (
    "change_by_unexpected_actor",
    "admin_bruteforce_success",
    "sender_ip_not_on_premises",
)
ABUSE_INDICATORS: tuple[FindingId, ...] = (
    "p1_p2_mismatch",
    "empty_sender_object_id",
    "volume_spike",
    "junk_delivery_spike",
    "external_spray",
    "supply_chain_targeting",
    "malicious_url",
    "malicious_attachment",
    "unprovisioned_sender_domain",
)
UNEXPLAINABLE: tuple[FindingId, ...] = (
    "malicious_url",
    "malicious_attachment",
    "change_by_unexpected_actor",
    "admin_bruteforce_success",
    "admin_unusual_location",
    "sender_ip_not_on_premises",
    "unprovisioned_sender_domain",
    "external_spray",
)
"""Findings that a benign explanation (approved change, expected volume) cannot cover."""
ADMIN_FINDINGS: tuple[FindingId, ...] = ("admin_bruteforce_success", "admin_unusual_location")

ACCEPTED_DOMAINS_SOURCE = "accepted_domains"
"""Without accepted domains, "unaccepted" and "external" cannot be told: those findings are skipped
(the source is already an evidence_unavailable finding, so the verdict is needs_review)."""


# --------------------------------------------------------------------------- helpers


def _fold(value: str | None) -> str:
    return (value or "").strip().casefold()


def hourly_counts(mail: MailStats) -> dict[datetime, int]:
    counts: dict[datetime, int] = {}
    for key, value in mail.hourly_counts.items():
        hour = parse_iso(key)
        if hour is not None:
            counts[hour] = counts.get(hour, 0) + value
    return counts


def baseline_median(counts: dict[datetime, int], now: datetime) -> float:
    """Median hourly count over the 168 clock hours ending with now's hour, hours without mail = 0."""
    now_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return statistics.median(counts.get(now_hour - timedelta(hours=k), 0) for k in range(BASELINE_HOURS))


def ip_networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """IP literals, CIDR ranges and `first-last` ranges as networks; host names are ignored."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in values:
        text = str(raw).strip()
        try:
            if "-" in text and "/" not in text:
                first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
                networks.extend(ipaddress.summarize_address_range(first, last))  # type: ignore[arg-type]
            else:
                networks.append(ipaddress.ip_network(text, strict=False))
        except (ValueError, TypeError):
            continue
    return networks


def addresses_outside(addresses: Iterable[str], ranges: Iterable[str]) -> list[str]:
    """The addresses (literal, CIDR or range) not wholly inside one of `ranges`."""
    allowed = ip_networks(ranges)
    outside: list[str] = []
    for address in addresses:
        parts = ip_networks([address])
        if not parts:
            continue  # a host name: the contract compares IPs only
        inside = all(
            any(part.version == net.version and part.subnet_of(net) for net in allowed)  # type: ignore[arg-type]
            for part in parts
        )
        if not inside and address not in outside:
            outside.append(address)
    return outside


def connector_subject(connector: ConnectorConfig) -> Subject:
    return Subject(kind="connector", id=connector.guid, name=connector.name)


def account_subject(upn: str, admins: Iterable[AdminSignIns]) -> Subject:
    """The account by UPN, with its object id when the sign-in evidence found one."""
    object_id = next((a.object_id for a in admins if _fold(a.upn) == _fold(upn)), None)
    return Subject(kind="account", id=object_id, name=upn)


def _is_account(subject: Subject, actor: str, object_id: str | None) -> bool:
    """Whether a finding's account is this acting admin, by UPN or by object id."""
    if subject.name is not None and _fold(subject.name) == actor:
        return True
    return subject.id is not None and object_id is not None and subject.id.casefold() == object_id.casefold()


def acting_suspects(
    history: ChangeHistory, findings: list[Finding], admins: list[AdminSignIns], directory: Directory
) -> list[Suspect]:
    """The acting admins made suspect by an unexpected change or an admin finding (never an actor
    the directory does not know: rule 10), in first-seen order."""
    object_ids = {_fold(a.upn): a.object_id for a in admins if a.object_id}
    because: dict[str, list[FindingId]] = {a: [] for a in history.acting_admins}
    for reviewed in history.changes:
        if reviewed.unexpected_actor and "change_by_unexpected_actor" not in because[_fold(reviewed.change.actor)]:
            because[_fold(reviewed.change.actor)].append("change_by_unexpected_actor")
    for finding in (f for f in findings if f.id in ADMIN_FINDINGS):
        named = [a for a in history.acting_admins
                 if any(_is_account(s, a, object_ids.get(a)) for s in finding.accounts())]
        # Admin findings concern acting admins only; one that names none of them covers them all.
        for actor in named or history.acting_admins:
            because[actor].append(finding.id)
    return [
        Suspect(upn=upn, object_id=object_ids.get(upn) or directory.object_ids.get(upn), because=reasons)
        for upn, reasons in because.items()
        if reasons and directory.is_user(upn)
    ]


def _finding(id: FindingId, subjects: Iterable[Subject], summary: str, **evidence: Any) -> Finding:
    return Finding(id=id, summary=summary, evidence=evidence, subjects=list(subjects))


# --------------------------------------------------------------------------- mail findings


def _mail_findings(evidence: Evidence, organization: Organization, t: Thresholds, now: datetime) -> list[Finding]:
    mail = evidence.mail
    domains_known = ACCEPTED_DOMAINS_SOURCE not in evidence.unavailable
    sample = mail.sample_message_ids[:5]
    about = [connector_subject(evidence.connector)]
    findings: list[Finding] = []

    def at_least(count: int, minimum: int) -> bool:
        return count >= minimum

    if at_least(mail.p1_p2_mismatch, t.indicator_min_messages):
        findings.append(_finding(
            "p1_p2_mismatch", about,
            f"{mail.p1_p2_mismatch} of {mail.messages} messages have an envelope (P1) domain other than the header (P2) domain",
            messages=mail.p1_p2_mismatch, total=mail.messages, sample_message_ids=sample,
        ))
    if at_least(mail.empty_sender_object_id, t.indicator_min_messages):
        findings.append(_finding(
            "empty_sender_object_id", about,
            f"{mail.empty_sender_object_id} of {mail.messages} messages have no SenderObjectId",
            messages=mail.empty_sender_object_id, total=mail.messages, sample_message_ids=sample,
        ))

    counts = hourly_counts(mail)
    median = baseline_median(counts, now)
    lookback_start = now - t.lookback
    spikes = sorted(
        (hour, count)
        for hour, count in counts.items()
        if hour + timedelta(hours=1) > lookback_start
        and hour <= now
        and count >= t.mail_per_hour
        and count >= t.baseline_factor * median
    )
    if spikes:
        peak_hour, peak = max(spikes, key=lambda s: s[1])
        findings.append(_finding(
            "volume_spike", about,
            f"{peak} messages in the hour from {peak_hour:%Y-%m-%d %H:%M}Z against a median of {median:g} an hour",
            peak_hour=peak_hour.isoformat(), peak_messages=peak, baseline_median=median,
            spike_hours=[h.isoformat() for h, _ in spikes][:24],
        ))

    if domains_known and at_least(mail.spoofed_to_internal, t.indicator_min_messages):
        findings.append(_finding(
            "internal_recipients", about,
            f"{mail.spoofed_to_internal} spoofed messages went to the organization's own domains",
            messages=mail.spoofed_to_internal,
        ))
    if mail.junk_or_quarantined >= t.junk_min_messages and mail.messages > 0 and (
        mail.junk_or_quarantined >= t.junk_min_ratio * mail.messages
    ):
        findings.append(_finding(
            "junk_delivery_spike", about,
            f"{mail.junk_or_quarantined} of {mail.messages} messages were junked, blocked or quarantined"
            + (f"; message trace shows {mail.trace_filtered_as_spam} FilteredAsSpam from the connector's IPs"
               if mail.trace_filtered_as_spam else ""),
            messages=mail.junk_or_quarantined, total=mail.messages,
            message_trace_filtered_as_spam=mail.trace_filtered_as_spam,
        ))
    if domains_known and at_least(mail.unprovisioned_sender_domain, t.indicator_min_messages):
        findings.append(_finding(
            "unprovisioned_sender_domain", about,
            f"{mail.unprovisioned_sender_domain} messages come from a header domain that is not accepted",
            messages=mail.unprovisioned_sender_domain, accepted_domains=evidence.accepted_domains,
        ))

    connector = evidence.connector
    if connector.direction == "inbound" and _fold(connector.connector_type) == "onpremises":
        configured = split_list(connector.properties.get("SenderIPAddresses"))
        outside = addresses_outside([*mail.sender_ips, *configured], organization.on_premises_ip_ranges)
        if outside:
            findings.append(_finding(
                "sender_ip_not_on_premises", about,
                f"on-premises connector mail or configuration uses {', '.join(outside[:5])}, outside the on-premises ranges",
                outside=outside[:20], on_premises_ip_ranges=organization.on_premises_ip_ranges,
                configured=configured, mail_sender_ips=mail.sender_ips[:20],
            ))

    if domains_known and mail.external_recipient_domains >= t.spray_min_domains:
        findings.append(_finding(
            "external_spray", about,
            f"mail reached {mail.external_recipient_domains} external domains that are neither accepted nor partners",
            domains=mail.external_recipient_domains,
            first_contact_recipient_domains=mail.first_contact_recipient_domains,
            first_contact_senders=mail.first_contact_senders,
        ))
    if at_least(mail.spoofed_to_partners, t.indicator_min_messages):
        findings.append(_finding(
            "supply_chain_targeting", about,
            f"{mail.spoofed_to_partners} spoofed messages went to partner domains",
            messages=mail.spoofed_to_partners, partner_domains=organization.partner_domains,
        ))
    if mail.malicious_url_messages >= 1:
        findings.append(_finding(
            "malicious_url", about,
            f"{mail.malicious_url_messages} messages carry a Phish or Malware verdict on a link",
            messages=mail.malicious_url_messages, sample_message_ids=mail.malicious_sample_message_ids[:5],
        ))
    if mail.malicious_attachment_messages >= 1:
        findings.append(_finding(
            "malicious_attachment", about,
            f"{mail.malicious_attachment_messages} messages carry a Phish or Malware verdict on a file",
            messages=mail.malicious_attachment_messages, sample_message_ids=mail.malicious_sample_message_ids[:5],
        ))
    return findings


# --------------------------------------------------------------------------- change and admin findings


def _change_findings(evidence: Evidence, history: ChangeHistory, directory: Directory) -> list[Finding]:
    connector = evidence.connector
    about = [connector_subject(connector)]
    created = [r.change for r in history.changes if is_creation(r.change)]
    modified = [r.change for r in history.changes if not is_creation(r.change)]
    approved = [r for r in history.changes if r.ticket]
    unexpected = [r.change for r in history.changes if r.unexpected_actor]

    findings: list[Finding] = []
    if created:
        findings.append(_finding(
            "connector_created", about,
            f"{connector.name} was created by {created[0].actor} at {created[0].at:%Y-%m-%d %H:%M}Z",
            changes=[change_summary(c) for c in created],
        ))
    if modified:
        last = modified[-1]
        findings.append(_finding(
            "connector_modified", about,
            f"{connector.name} was changed {len(modified)} time(s), last by {last.actor} at {last.at:%Y-%m-%d %H:%M}Z",
            changes=[change_summary(c) for c in modified],
        ))
    if unexpected:
        actors = acting_admins(unexpected)
        accounts = [account_subject(a, evidence.admins) for a in actors if directory.is_user(a)]
        findings.append(_finding(
            "change_by_unexpected_actor", [*about, *accounts],
            f"{', '.join(actors)} changed {connector.name} without being a connector admin or holding an approved change",
            actors=actors, changes=[change_summary(c) for c in unexpected],
        ))
    if approved:
        findings.append(_finding(
            "change_approved", about,
            f"{len(approved)} change(s) match approved change records "
            f"({', '.join(sorted({str(r.ticket) for r in approved}))})",
            changes=[change_summary(r.change, r.ticket) for r in approved],
        ))
    return findings


def _admin_findings(admins: list[AdminSignIns], acting: list[str], t: Thresholds) -> list[Finding]:
    relevant = [a for a in admins if _fold(a.upn) in acting]
    findings: list[Finding] = []
    bursts = [
        (admin, burst)
        for admin in relevant
        for burst in admin.failure_bursts
        if burst.failures > t.bruteforce_failures_per_minute
        and burst.first_success is not None
        and timedelta(0) <= burst.first_success - burst.latest_failure <= t.bruteforce_success_within
    ]
    if bursts:
        admin, burst = bursts[0]
        assert burst.first_success is not None
        accounts = sorted({a.upn for a, _ in bursts})
        findings.append(_finding(
            "admin_bruteforce_success", [account_subject(upn, relevant) for upn in accounts],
            f"{admin.upn}: {burst.failures} failed logons in a minute, then a success "
            f"{(burst.first_success - burst.latest_failure).total_seconds():g} s later",
            accounts=accounts, failures=burst.failures,
            latest_failure=burst.latest_failure.isoformat(), success=burst.first_success.isoformat(),
            isp=burst.isp, country=burst.country, application=burst.application,
        ))
    unusual: list[tuple[AdminSignIns, dict[str, Any]]] = []
    for admin in relevant:
        total = admin.successful_signins
        if total < t.unusual_location_min_signins:
            continue
        rare = sorted(c for c, n in admin.countries.items() if c and n < t.unusual_location_max_share * total)
        if rare:
            unusual.append((admin, {"upn": admin.upn, "rare_countries": rare, "countries": admin.countries,
                                    "signins": total}))
    if unusual:
        findings.append(_finding(
            "admin_unusual_location", [account_subject(a.upn, relevant) for a, _ in unusual],
            "; ".join(f"{u['upn']} signed in from {', '.join(u['rare_countries'])}, rare among its sign-ins"
                      for _, u in unusual),
            accounts=[u for _, u in unusual],
        ))
    return findings


# --------------------------------------------------------------------------- verdict


def grade(
    evidence: Evidence, organization: Organization, thresholds: Thresholds, now: datetime, v2: bool = True
) -> Verdict:
    """`v2=False` only for cases begun before version 2 (docs/architecture.md, patching)."""
    lookback_start = now - thresholds.lookback
    history = review(evidence.changes, evidence.connector, organization, lookback_start, now, v2)
    directory = Directory.of(evidence.sweep)
    connector = [connector_subject(evidence.connector)]

    findings = [
        *_mail_findings(evidence, organization, thresholds, now),
        *_change_findings(evidence, history, directory),
    ]
    if evidence.blocked_connector:
        findings.append(_finding(
            "connector_blocked", connector,
            f"{evidence.connector.name} is on the Restricted entities list",
            connector=evidence.connector.name,
        ))
    findings.extend(_admin_findings(evidence.admins, history.acting_admins, thresholds))
    if evidence.compromised_senders:
        findings.append(_finding(
            "compromised_sender_accounts",
            [Subject(kind="account", id=object_id) for object_id in evidence.compromised_senders[:20]],
            f"{len(evidence.compromised_senders)} internal account(s) sent more than "
            f"{thresholds.compromised_sender_per_hour} external messages in an hour",
            object_ids=evidence.compromised_senders[:20], addresses=evidence.compromised_sender_addresses[:20],
        ))
    suspects = acting_suspects(history, findings, evidence.admins, directory)
    others: list[OtherConnector] = []
    if evidence.sweep is not None:
        swept = sweep(evidence.sweep, evidence.connector, organization, lookback_start, now, suspects)
        findings, others, suspects = [*findings, *swept.findings], swept.others, swept.suspects
    if evidence.unavailable:
        findings.append(unavailable_finding(evidence.unavailable))

    kind, reasons = decide(findings, evidence, organization, history)
    return Verdict(kind=kind, findings=findings, reasons=reasons, history=history, suspects=suspects, others=others)


def unavailable_finding(sources: list[str]) -> Finding:
    return _finding("evidence_unavailable", [], f"could not read: {', '.join(sources)}", sources=list(sources))


def decide(
    findings: list[Finding],
    evidence: Evidence,
    organization: Organization,
    history: ChangeHistory,
) -> tuple[VerdictKind, list[str]]:
    """The verdict rules in docs/scenarios.md order; the first that holds wins."""
    present = {f.id for f in findings}

    def named(ids: Iterable[str]) -> list[str]:
        return [i for i in ids if i in present]

    if blocking := named(("evidence_unavailable", "connector_unresolved")):
        return "needs_review", [f"{', '.join(blocking)}: the evidence is incomplete, so no verdict can be trusted"]

    control, abuse = named(CONTROL_INDICATORS), named(ABUSE_INDICATORS)
    reproduced = named(CONNECTOR_INDICATORS)
    approved_only = bool(history.changes) and "change_approved" in present and all(r.ticket is not None for r in history.changes)
    high_volume = _fold(evidence.connector.name) in {_fold(n) for n in organization.expected_high_volume_connectors}
    approved_note = (
        ["change_approved: the connector's changes in the lookback match approved change records"]
        if "change_approved" in present
        else []
    )

    if control and abuse:
        return "true_positive", [
            f"control indicator(s) {', '.join(control)} together with abuse indicator(s) {', '.join(abuse)}",
            *approved_note,
        ]

    unexplainable = named(UNEXPLAINABLE)
    if reproduced and (approved_only or high_volume) and not unexplainable:
        why = "every change in the lookback is approved" if approved_only else "it is an expected high-volume connector"
        return "benign_positive", [f"{', '.join(reproduced)} reproduce but are explained: {why}"]

    if not reproduced:
        return "false_positive", [
            "none of the connector indicators (" + ", ".join(CONNECTOR_INDICATORS) + ") reproduce",
            *(["connector_blocked is Defender's own restriction, not independent evidence"] if "connector_blocked" in present else []),
        ]

    reasons = [f"{', '.join(reproduced)} reproduce"]
    if unexplainable:
        reasons.append(f"{', '.join(unexplainable)} cannot be explained away")
    if not (approved_only or high_volume):
        reasons.append("no approved change or expected high volume explains them")
    if control and not abuse:
        reasons.append(f"{', '.join(control)} without an abuse indicator")
    if abuse and not control:
        reasons.append(f"{', '.join(abuse)} without a control indicator")
    return "needs_review", reasons


def connector_unresolved_verdict(
    resolution: ConnectorResolution,
    swept: Sweep | None = None,
    organization: Organization = Organization(),
    lookback_start: datetime | None = None,
    now: datetime | None = None,
    unavailable: list[str] | None = None,
) -> Verdict:
    """needs_review when the alert's evidence matches no connector, several, or could not be read.
    The sweep of the other connectors and of deleted ones still runs (version 2)."""
    findings = [
        _finding(
            "connector_unresolved", [Subject(kind="connector", name=name) for name in resolution.candidates],
            resolution.reason or "the alert's evidence matches no connector",
            candidates=resolution.candidates, method=resolution.method,
        )
    ]
    if resolution.method == "unavailable":
        findings.insert(0, _finding(
            "evidence_unavailable", [],
            f"could not read: connector_resolution ({resolution.reason})",
            sources=["connector_resolution"],
        ))
    reasons = [f"{', '.join(f.id for f in findings)}: {resolution.reason or 'no connector'}; nothing is changed"]
    suspects: list[Suspect] = []
    others: list[OtherConnector] = []
    if swept is not None and lookback_start is not None and now is not None:
        result = sweep(swept, None, organization, lookback_start, now, [])
        findings, others, suspects = [*findings, *result.findings], result.others, result.suspects
    if unavailable:
        findings.append(unavailable_finding(unavailable))
    return Verdict(kind="needs_review", findings=findings, reasons=reasons, suspects=suspects, others=others)
