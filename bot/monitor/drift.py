"""Drift: the account's password changed in AD without atp-bot, or sensors sending a wrong one.

Seen without a single bind as the account (so without any lockout risk), through its read-only lookup
account: `pwdLastSet` later than the last save through atp-bot means someone reset the password in AD
(or its expiry forced a change) and the sensors still have the old one; `badPwdCount` rising is the
sensors failing with a wrong password, before the lockout. `badPwdCount` is not replicated between
DCs, so it is read on every configured DC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, SecretStr

from bot.config import AccountConfig, DomainController
from bot.directory import LockoutGuard, LookupBlocked, LookupGuard
from bot.directory.connection import NoVerdict
from bot.directory.lockout import GuardUnavailable
from bot.directory.lookup import (
    UF_LOCKOUT,
    domain_lockout_policy,
    filetime_to_datetime,
    find_user,
    first_int,
    server_identity,
)
from bot.directory.lookup_guard import lookup_session
from bot.infra.redaction import active_secret
from bot.store import CredentialMetadata

log = logging.getLogger(__name__)

_USER_ATTRIBUTES = [
    "pwdLastSet",
    "badPwdCount",
    "badPasswordTime",
    "lockoutTime",
    "msDS-User-Account-Control-Computed",
]


class DriftUnavailable(Exception):
    """The lookup account could not find the account on this DC."""


@dataclass(frozen=True)
class DcReading:
    """What one DC says about the account (badPwdCount is this DC's own)."""

    dc: str  # the URL that reached it
    password_last_set: datetime | None
    bad_password_count: int
    locked: bool
    lockout_threshold: int | None
    server: str | None = None  # which DC it is (rootDSE dsServiceName), whatever the URL
    also: tuple[str, ...] = ()  # the other configured URLs that reached the same DC

    @property
    def name(self) -> str:
        return f"{self.dc} (also {', '.join(self.also)})" if self.also else self.dc


@dataclass(frozen=True)
class OwnTests:
    """atp-bot's own rejected tests of the account within the lockout guard's window (its ledger): AD
    counted them in badPwdCount too, so they are nobody else's wrong passwords."""

    count: int = 0
    window_minutes: int = 0
    unknown: str | None = None  # why the ledger could not be read (the count is then unknown)

    @classmethod
    def of(cls, guard: LockoutGuard, account_id: str) -> OwnTests:
        try:
            counted = guard.count(account_id)
        except GuardUnavailable as problem:
            return cls(unknown=f"{problem.where} is unavailable: {problem.cause}")
        return cls(counted.rejections, guard.config.window_minutes)


class DriftReport(BaseModel):
    """`atp-bot verify --json`: one account. `in_sync` is None when it could not be judged."""

    model_config = ConfigDict(frozen=True)

    account: str
    in_sync: bool | None
    password_changed_at: datetime | None
    saved_at: datetime | None
    bad_password_count: int | None
    lockout_threshold: int | None
    locked: bool | None
    findings: list[str]
    unreachable: bool = False  # no DC answered (exit 3); not one of the JSON fields
    # The drift findings by a stable key (one per event: the change in AD, a DC's bad count, the
    # lockout), so that the monitor alerts once per event; not one of the JSON fields.
    events: dict[str, str] = {}

    def as_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude={"unreachable", "events"})


def _recent_bad_count(user: dict[str, object], window: int | None, now: datetime) -> int:
    """badPwdCount, or 0 when its last bad attempt is older than the lockout observation window (AD
    forgets it at the next attempt)."""
    count = first_int(user, "badPwdCount") or 0
    last_bad = first_int(user, "badPasswordTime") or 0
    if count and window and last_bad:
        window_end = filetime_to_datetime(last_bad) + timedelta(microseconds=abs(window) // 10)
        if window_end < now:
            return 0
    return count


def read_dc(
    account: AccountConfig,
    dc: DomainController,
    lookup_password: SecretStr,
    now: datetime,
    lookups: LookupGuard,
) -> DcReading:
    """Read the account's state on one DC with the lookup account. Raises NoVerdict (unreachable),
    LookupBlocked (the lookup account is suspended, or this DC refused it) or DriftUnavailable."""
    with lookup_session(dc, account, lookup_password, lookups) as conn:
        threshold, window = domain_lockout_policy(conn, account)
        lookups.note_window(account, window)
        user = find_user(conn, account, account.name, _USER_ATTRIBUTES)
        server = server_identity(conn)
    if user is None:
        raise DriftUnavailable(f"{account.username} not found by the lookup account")
    last_set = first_int(user, "pwdLastSet")
    uac = first_int(user, "msDS-User-Account-Control-Computed") or 0
    return DcReading(
        dc=dc.url,
        password_last_set=filetime_to_datetime(last_set) if last_set else None,
        bad_password_count=_recent_bad_count(user, window, now),
        locked=bool(uac & UF_LOCKOUT),  # computed from lockoutTime and the lockout duration
        lockout_threshold=threshold,
        server=server,
    )


def one_per_dc(readings: list[DcReading]) -> list[DcReading]:
    """One reading per domain controller: URLs that reached the same DC (its dsServiceName) are one DC,
    named by all its URLs (its badPwdCount is counted once)."""
    merged: dict[str, DcReading] = {}
    for reading in readings:
        key = reading.server or reading.dc
        first = merged.get(key)
        merged[key] = reading if first is None else replace(first, also=(*first.also, reading.dc))
    return list(merged.values())


def _short(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def evaluate(
    account_id: str,
    readings: list[DcReading],
    problems: list[str],
    saved: CredentialMetadata | None,
    own: OwnTests | None = None,
) -> DriftReport:
    """The verdict from every DC's reading, the last save through atp-bot and atp-bot's own rejected
    tests. With nothing saved yet there is nothing to compare: never drift (`in_sync` None)."""
    findings = list(problems)
    if not readings:
        return DriftReport(
            account=account_id,
            in_sync=None,
            password_changed_at=None,
            saved_at=saved.saved_at if saved else None,
            bad_password_count=None,
            lockout_threshold=None,
            locked=None,
            findings=findings,
            unreachable=True,
        )
    readings = one_per_dc(readings)
    changed = max((r.password_last_set for r in readings if r.password_last_set), default=None)
    threshold = next((r.lockout_threshold for r in readings if r.lockout_threshold is not None), None)
    worst = max(readings, key=lambda r: r.bad_password_count)
    locked = [r.name for r in readings if r.locked]
    events = _changed_event(account_id, changed, saved)
    findings += _bad_counts(account_id, readings, threshold, own or OwnTests(), events)
    if locked:
        events["locked"] = f"{account_id} is locked out in AD ({', '.join(locked)})"
    if saved is None:
        findings.append(f"no password of {account_id} was saved through atp-bot yet: nothing to compare with")
    return DriftReport(
        account=account_id,
        in_sync=None if saved is None else not events,
        password_changed_at=changed,
        saved_at=saved.saved_at if saved else None,
        bad_password_count=worst.bad_password_count,
        lockout_threshold=threshold,
        locked=bool(locked),
        findings=[*findings, *events.values()],
        events=events,
    )


def _changed_event(
    account_id: str, changed: datetime | None, saved: CredentialMetadata | None
) -> dict[str, str]:
    if saved is None or changed is None or changed <= saved.saved_at:
        return {}
    return {
        f"changed:{changed.isoformat()}": (
            f"{account_id}'s password was changed in AD at {_short(changed)}, not through atp-bot (last "
            f"saved {_short(saved.saved_at)}); the sensors will fail with the old one. Update the password."
        )
    }


def _bad_counts(
    account_id: str, readings: list[DcReading], threshold: int | None, own: OwnTests, events: dict[str, str]
) -> list[str]:
    """Each DC's badPwdCount beyond atp-bot's own rejected tests becomes an event (the sensors'); the
    findings say what atp-bot's own tests explain, or that the ledger could not tell."""
    findings = []
    of_threshold = f" of the lockout threshold {threshold}" if threshold else ""
    ours = f"{own.count} rejected test(s) of atp-bot's own in the last {own.window_minutes} minutes"
    for reading in (r for r in readings if r.bad_password_count):
        count = f"badPwdCount {reading.bad_password_count}{of_threshold} on {reading.name}"
        if reading.bad_password_count <= own.count:
            findings.append(f"{count}: explained by {ours} (the lockout guard's ledger), not by the sensors")
            continue
        besides = f", besides {ours}" if own.count else ""
        events[f"bad:{reading.dc}"] = (
            f"sensors are sending a wrong password for {account_id}: {count}{besides}"
        )
    if own.unknown and any(r.bad_password_count for r in readings):
        findings.append(f"atp-bot cannot tell how many of these were its own rejected tests ({own.unknown})")
    return findings


def check_drift(
    account: AccountConfig, saved: CredentialMetadata | None, now: datetime, *, guard: LockoutGuard
) -> DriftReport:
    """Read every DC with the account's lookup account (never the account's own password). A refused or
    suspended lookup account ends the read on every DC (`guard.lookups`: the suspension); the guard's
    ledger tells atp-bot's own rejected tests apart from the sensors' wrong passwords."""
    if account.lookup_username is None:
        raise ValueError(f"account {account.id} has no lookup account")
    lookup_password = account.lookup_password()
    readings: list[DcReading] = []
    problems: list[str] = []
    with active_secret(lookup_password):
        for dc in account.dcs:
            try:
                readings.append(read_dc(account, dc, lookup_password, now, guard.lookups))
            except NoVerdict as problem:
                problems.append(f"{dc.url} could not be read: {problem.detail}")
            except DriftUnavailable as problem:
                problems.append(f"{dc.url} could not be read: {problem}")
            except LookupBlocked as blocked:
                problems.append(blocked.message)
                break
    log.info("account %s: drift read on %d of %d DC(s)", account.id, len(readings), len(account.dcs))
    return evaluate(account.id, readings, problems, saved, OwnTests.of(guard, account.id))


def render_report(report: DriftReport) -> list[str]:
    """The report as an operator reads it: a verdict line, then the details."""
    verdict = {True: "IN SYNC", False: "DRIFT", None: "UNKNOWN"}[report.in_sync]
    if report.in_sync is None and not report.unreachable and report.saved_at is None:
        verdict = "NOTHING TO COMPARE"
    lines = [f"{verdict}: account {report.account}"]
    changed = f"{report.password_changed_at:%Y-%m-%d %H:%M} UTC" if report.password_changed_at else "unknown"
    saved = f"{report.saved_at:%Y-%m-%d %H:%M} UTC" if report.saved_at else "never"
    lines.append(f"  changed in AD: {changed}; saved through atp-bot: {saved}")
    if report.bad_password_count is not None:
        threshold = report.lockout_threshold or "none"
        lines.append(f"  badPwdCount: {report.bad_password_count} (lockout threshold {threshold})")
    lines.extend(f"  - {finding}" for finding in report.findings)
    return lines
