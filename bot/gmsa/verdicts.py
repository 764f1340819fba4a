"""The gMSA verdicts: each check of `gmsa check` judged from the facts read (pure), with its fix."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from bot.config import AccountConfig
from bot.gmsa.core import Check, GmsaFacts, GmsaReport, SensorScope, Status, Verdict

# A KDS root key is usable by every DC only once replication had time: Microsoft says 10 hours.
KDS_WAIT = timedelta(hours=10)
UF_ACCOUNTDISABLE = 0x2
AES_TYPES = {0x8: "AES128", 0x10: "AES256"}
ENCRYPTION_NAMES = {0x1: "DES-CBC-CRC", 0x2: "DES-CBC-MD5", 0x4: "RC4", **AES_TYPES}


def _identity(account: AccountConfig) -> str:
    return account.username.removesuffix("$")


def check_object(account: AccountConfig, facts: GmsaFacts, now: datetime) -> Check:
    gmsa = facts.gmsa
    if gmsa is None:
        return Check(
            "object",
            Status.PROBLEM,
            f"There is no gMSA {account.username} (msDS-GroupManagedServiceAccount) under {facts.base_dn}.",
            f"Create it: `atp-bot gmsa plan --account {account.id} --gmsa {_identity(account)}` prints the "
            "PowerShell.",
        )
    if gmsa.user_account_control & UF_ACCOUNTDISABLE:
        return Check(
            "object",
            Status.PROBLEM,
            f"{account.username} is disabled in Active Directory.",
            f"Enable-ADAccount -Identity '{account.username}'",
        )
    if gmsa.pwd_last_set is not None and gmsa.pwd_last_set > now:
        return Check(
            "object",
            Status.PROBLEM,
            f"{account.username} has pwdLastSet {gmsa.pwd_last_set:%Y-%m-%d %H:%M} UTC, in the future (a "
            "clock jump, e.g. from Secure Time Seeding): its password cannot be retrieved any more.",
            f"Create a new gMSA (`atp-bot gmsa plan --account {account.id} --gmsa NEWNAME`) and set it as "
            "the directory service account in the portal.",
        )
    last_set = f"{gmsa.pwd_last_set:%Y-%m-%d %H:%M} UTC" if gmsa.pwd_last_set else "never"
    return Check("object", Status.OK, f"{gmsa.dn}: enabled, password last set {last_set}.")


def _join_fix(account: AccountConfig, facts: GmsaFacts, computers: Sequence[str]) -> str:
    if facts.join_group:
        members = ", ".join(f"'{c}'" for c in computers)
        return f"Add-ADGroupMember -Identity '{facts.join_group}' -Members {members}"
    principals = ", ".join(f"'{p}'" for p in (*facts.allowed_names, *computers))
    return (
        f"Set-ADServiceAccount -Identity '{_identity(account)}' "
        f"-PrincipalsAllowedToRetrieveManagedPassword {principals}"
    )


def _unified_note(unified: Sequence[str]) -> list[str]:
    if not unified:
        return []
    return [
        f"Unified 3.x sensors run as LocalSystem and use no directory service account, so they need not "
        f"retrieve the password: {', '.join(unified)}."
    ]


def check_retrieval(account: AccountConfig, facts: GmsaFacts, unified: Sequence[str] = ()) -> Check:
    if facts.membership_problem:
        return Check(
            "retrieval", Status.UNKNOWN, " ".join([facts.membership_problem, *_unified_note(unified)])
        )
    if not facts.sensors and unified:
        return Check("retrieval", Status.OK, " ".join(_unified_note(unified)))
    if not facts.sensors:
        return Check(
            "retrieval",
            Status.UNKNOWN,
            f"No sensors are configured or discovered for account {account.id}: nothing to check against "
            f"{', '.join(facts.allowed_names) or 'the allowed principals'}.",
        )
    denied = [s for s in facts.sensors if s.may_retrieve is False]
    unknown = [s for s in facts.sensors if s.may_retrieve is None]
    recent = [s for s in facts.sensors if s.may_retrieve and s.joined_recently]
    lines = [s.detail for s in (*denied, *unknown, *recent)]
    fixes = []
    missing = [s.computer or f"{s.name}$" for s in denied if s.via is None]
    if missing:
        fixes.append(_join_fix(account, facts, missing))
    if any(s.via is not None for s in denied):
        # Set-ADServiceAccount rewrites the whole descriptor: the Deny entries go.
        allowed = ", ".join(f"'{p}'" for p in facts.allowed_names)
        fixes.append(
            f"Set-ADServiceAccount -Identity '{_identity(account)}' "
            f"-PrincipalsAllowedToRetrieveManagedPassword {allowed}"
        )
    fixes += [
        f"On {s.name}: klist purge -li 0x3e7 (or reboot it), as it joined {s.joined_recently} recently"
        for s in recent
    ]
    if denied:
        status = Status.PROBLEM
    elif unknown:
        status = Status.UNKNOWN
    else:
        status = Status.OK
        lines.insert(0, f"Every sensor's computer account may retrieve the password of {account.username}.")
    return Check("retrieval", status, " ".join([*lines, *_unified_note(unified)]), "; ".join(fixes))


_ADD_KDS = (
    "Add-KdsRootKey -EffectiveImmediately   # as a domain admin of the forest root; usable 10 hours later"
)


def check_kds(facts: GmsaFacts, now: datetime) -> Check:
    if facts.kds is None:
        return Check("kds_root_key", Status.UNKNOWN, facts.kds_problem or "The KDS root keys were not read.")
    if not facts.kds.container:
        return Check(
            "kds_root_key",
            Status.PROBLEM,
            "The forest has no KDS root key (no Group Key Distribution Service container): no gMSA "
            "password can be computed.",
            _ADD_KDS,
        )
    if not facts.kds.effective:
        seen = (
            f"{facts.kds.hidden} KDS root key(s) exist, but the lookup account may not read when they "
            "became effective"
            if facts.kds.hidden
            else "No KDS root key is visible to the lookup account"
        )
        return Check(
            "kds_root_key",
            Status.UNKNOWN,
            f"{seen} (the keys' attributes are confidential: domain admins read them).",
            f"As a domain admin: Get-KdsRootKey; if it shows none: {_ADD_KDS}",
        )
    usable = [t for t in facts.kds.effective if t + KDS_WAIT <= now]
    if usable:
        return Check(
            "kds_root_key",
            Status.OK,
            f"A KDS root key is effective since {max(usable):%Y-%m-%d %H:%M} UTC.",
        )
    ready = min(facts.kds.effective) + KDS_WAIT
    return Check(
        "kds_root_key",
        Status.PROBLEM,
        f"The newest KDS root key became effective less than 10 hours ago: domain controllers may not all "
        f"have it before {ready:%Y-%m-%d %H:%M} UTC.",
        f"Wait until {ready:%Y-%m-%d %H:%M} UTC, then run `atp-bot gmsa check` again.",
    )


def _describe_types(value: int) -> str:
    names = [name for bit, name in ENCRYPTION_NAMES.items() if value & bit]
    return f"{', '.join(names) or 'none'} (0x{value:x})"


def check_encryption(account: AccountConfig, facts: GmsaFacts) -> Check:
    gmsa = facts.gmsa
    if gmsa is None:
        return Check("encryption", Status.UNKNOWN, f"{account.username} was not found.")
    interval = f"{gmsa.interval_days} days" if gmsa.interval_days else "not set (30 days)"
    fix = f"Set-ADServiceAccount -Identity '{_identity(account)}' -KerberosEncryptionType AES128,AES256"
    if gmsa.encryption_types is None:
        return Check(
            "encryption",
            Status.PROBLEM,
            f"msDS-SupportedEncryptionTypes is not set (the domain default, possibly RC4 only); password "
            f"interval {interval}.",
            fix,
        )
    types = _describe_types(gmsa.encryption_types)
    if not any(gmsa.encryption_types & bit for bit in AES_TYPES):
        return Check(
            "encryption",
            Status.PROBLEM,
            f"Kerberos encryption types {types}: no AES; interval {interval}.",
            fix,
        )
    return Check("encryption", Status.OK, f"Kerberos encryption types {types}; password interval {interval}.")


def check_graph(scope: SensorScope) -> tuple[Check, ...]:
    """Graph's sensor list could not be read: the sensors only Graph knows were not checked."""
    if scope.graph_error is None:
        return ()
    return (
        Check(
            "graph",
            Status.UNKNOWN,
            f"Graph's sensor list could not be read ({scope.graph_error}): only [[sensors]] were checked, "
            "not the sensors that only Graph knows.",
            "Check [graph] and Graph's reachability (`atp-bot sensors` shows the same), then check again.",
            unreachable=True,
        ),
    )


def evaluate(account: AccountConfig, verdict: Verdict, now: datetime, scope: SensorScope) -> GmsaReport:
    """Every check of issue 15 for one gMSA account, from what was read."""
    facts = verdict.facts
    extra = (*check_graph(scope), *verdict.host_checks)
    if facts is None:
        detail = verdict.unavailable or "The directory could not be read."
        checks = tuple(
            Check(name, Status.UNKNOWN, detail, unreachable=verdict.unreachable)
            for name in ("object", "retrieval", "kds_root_key", "encryption")
        )
        return GmsaReport(account.id, (*checks, *extra), unified=scope.unified)
    checks = (
        check_object(account, facts, now),
        check_retrieval(account, facts, scope.unified),
        check_kds(facts, now),
        check_encryption(account, facts),
    )
    return GmsaReport(account.id, (*checks, *extra), facts.sensors, scope.unified)


_MARK = {Status.OK: "ok", Status.PROBLEM: "PROBLEM", Status.UNKNOWN: "unknown"}


def describe(report: GmsaReport) -> list[str]:
    """The report as an operator reads it (the CLI prints it, Slack shows it)."""
    lines = [f"gMSA account {report.account}:"]
    for check in report.checks:
        lines.append(f"  {check.name}: {_MARK[check.status]}: {check.detail}")
        if check.fix:
            lines.append(f"    fix: {check.fix}")
    if report.sensors or report.unified:
        lines.append("  sensors:")
    for sensor in report.sensors:
        verdict = {True: "may retrieve", False: "MAY NOT retrieve", None: "unknown"}[sensor.may_retrieve]
        via = f" via {sensor.via}" if sensor.via else ""
        lines.append(f"    {sensor.name} ({sensor.computer or 'no computer account'}): {verdict}{via}")
    lines += [
        f"    {name}: unified 3.x sensor: needs no directory service account" for name in report.unified
    ]
    return lines


def alert_verdict(report: GmsaReport, sensors: Collection[str]) -> str:
    """What a monitor alert says about the gMSA for the sensors that logged a gMSA failure."""
    found = [s.detail for s in report.sensors if s.name in sensors and s.detail]
    found += [
        c.detail
        for c in report.checks
        if c.status is Status.PROBLEM
        and c.name != "retrieval"
        and (not c.name.startswith("host:") or c.name.removeprefix("host:") in sensors)
    ]
    if not found:
        names = ", ".join(sorted(sensors))
        return f"`atp-bot gmsa check --account {report.account}` found nothing wrong for {names}."
    return " ".join(found)
