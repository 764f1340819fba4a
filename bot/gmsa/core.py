"""gMSA accounts: the facts read about a group managed service account and the report made of them.

A gMSA's password is rotated by AD and retrieved by each sensor's computer account: it fails in its own
ways (a sensor not allowed to retrieve it, no KDS root key yet, a `pwdLastSet` in the future). The facts
are read by `bot.gmsa.directory` (LDAP) and `bot.gmsa.hosts` (WinRM) and judged by `bot.gmsa.verdicts`,
without I/O, so every branch is testable on its own. Slack and the CLI only render a `GmsaReport`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from winacl.dtyp.ace import ACEType
from winacl.dtyp.security_descriptor import SECURITY_DESCRIPTOR

from bot.config import GMSA_LOG_SIGNATURES, SensorConfig
from bot.fleet import Generation

# A computer that joined an allowed group less than this ago may still hold a Kerberos ticket without it.
TICKET_LIFETIME = timedelta(hours=10)
_SD_HEADER = struct.Struct("<BBHIIII")  # revision, Sbz1, control, owner/group/SACL/DACL offsets
_SE_SELF_RELATIVE = 0x8000
_ALLOW = {ACEType.ACCESS_ALLOWED_ACE_TYPE, ACEType.ACCESS_ALLOWED_OBJECT_ACE_TYPE}
_DENY = {ACEType.ACCESS_DENIED_ACE_TYPE, ACEType.ACCESS_DENIED_OBJECT_ACE_TYPE}


@dataclass(frozen=True)
class GmsaSensor:
    """A sensor of the account's domain, as `gmsa check` sees it."""

    name: str
    host_names: tuple[str, ...]  # the DNS names its computer account's `dNSHostName` may hold
    generation: Generation  # "2" classic, "3" unified, "unknown": never guessed
    winrm: SensorConfig | None = None  # how to reach it for the host checks; None: not over WinRM
    gateway: bool = False  # an ATA gateway (it uses the DSA like a classic sensor)

    @property
    def uses_dsa(self) -> bool:
        """A unified 3.x sensor runs as LocalSystem: its computer need not retrieve the password."""
        return self.generation != "3"


@dataclass(frozen=True)
class SensorScope:
    """The account's sensors (Graph's when `discover_sensors` is on, and `[[sensors]]`), and why Graph
    could not be used (then only `[[sensors]]` are in it)."""

    sensors: tuple[GmsaSensor, ...] = ()
    graph_error: str | None = None

    @property
    def retrieving(self) -> tuple[GmsaSensor, ...]:
        """The sensors whose computers must retrieve the password."""
        return tuple(s for s in self.sensors if s.uses_dsa)

    @property
    def unified(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sensors if not s.uses_dsa)

    def with_host_evidence(self, shown: Mapping[str, Generation]) -> SensorScope:
        """The generation each host showed over WinRM, where Graph's version did not tell it."""
        sensors = tuple(
            replace(s, generation=shown.get(s.name, "unknown")) if s.generation == "unknown" else s
            for s in self.sensors
        )
        return replace(self, sensors=sensors)


class MembershipUnreadable(ValueError):
    """`msDS-GroupMSAMembership` is not a security descriptor atp-bot can decode."""


@dataclass(frozen=True)
class Membership:
    """Who `msDS-GroupMSAMembership` allows (and denies) to retrieve the password, as SID strings."""

    allowed: tuple[str, ...]
    denied: tuple[str, ...] = ()


def _check_header(descriptor: bytes) -> None:
    """The parser accepts any bytes; AD's form is revision 1, self-relative, offsets inside the blob."""
    if len(descriptor) < _SD_HEADER.size:
        raise MembershipUnreadable("not a security descriptor (too short)")
    revision, _, control, *offsets = _SD_HEADER.unpack_from(descriptor)
    if revision != 1 or not control & _SE_SELF_RELATIVE:
        raise MembershipUnreadable("not a self-relative security descriptor")
    if any(offset >= len(descriptor) for offset in offsets):
        raise MembershipUnreadable("not a security descriptor (an offset points outside it)")


def decode_membership(descriptor: bytes) -> Membership:
    """The principals of a self-relative SECURITY_DESCRIPTOR's DACL (the form AD stores)."""
    _check_header(descriptor)
    try:
        parsed = SECURITY_DESCRIPTOR.from_bytes(descriptor)
    except Exception as exc:  # noqa: BLE001 - a malformed blob fails in any of the parser's steps
        raise MembershipUnreadable(f"not a security descriptor ({type(exc).__name__})") from None
    aces = parsed.Dacl.aces if parsed.Dacl is not None else []
    allowed = [str(ace.Sid) for ace in aces if ace.AceType in _ALLOW and ace.Mask]
    denied = [str(ace.Sid) for ace in aces if ace.AceType in _DENY and ace.Mask]
    return Membership(tuple(dict.fromkeys(allowed)), tuple(dict.fromkeys(denied)))


class Status(StrEnum):
    OK = "ok"
    PROBLEM = "problem"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    unreachable: bool = False  # unknown because a peer could not be reached


@dataclass(frozen=True)
class SensorAccess:
    """Whether one sensor's computer account may retrieve the password, and through which groups."""

    name: str
    computer: str | None  # the computer account's sAMAccountName; None when not found in AD
    may_retrieve: bool | None
    # How it is reached: "MDI-Outer > MDI-Sensors", "direct", a well-known group; for a sensor that may
    # not retrieve, the Deny entry's path (None: no allowed principal contains it).
    via: str | None = None
    joined_recently: str | None = None  # the group it joined less than TICKET_LIFETIME ago
    detail: str = ""


@dataclass(frozen=True)
class GmsaObject:
    dn: str
    user_account_control: int
    pwd_last_set: datetime | None  # None: never set
    encryption_types: int | None
    interval_days: int | None
    membership: bytes | None
    sid: str | None = None


@dataclass(frozen=True)
class KdsKeys:
    """The forest's KDS root keys as the lookup account sees them (`container`: the container exists)."""

    container: bool
    effective: tuple[datetime, ...] = ()
    hidden: int = 0  # keys seen whose effective time the lookup account may not read (confidential)


@dataclass(frozen=True)
class GmsaFacts:
    """Everything read from AD for one gMSA account."""

    gmsa: GmsaObject | None
    base_dn: str
    allowed_names: tuple[str, ...] = ()  # the principals in msDS-GroupMSAMembership, by name
    join_group: str | None = None  # the allowed group a missing sensor should join
    sensors: tuple[SensorAccess, ...] = ()
    membership_problem: str | None = None
    kds: KdsKeys | None = None
    kds_problem: str | None = None


@dataclass(frozen=True)
class GmsaReport:
    account: str
    checks: tuple[Check, ...]
    sensors: tuple[SensorAccess, ...] = ()  # the sensors that must retrieve the password
    unified: tuple[str, ...] = ()  # unified 3.x sensors: they need no DSA, so no password

    def as_json(self) -> dict[str, object]:
        return {
            "account": self.account,
            "checks": [
                {"name": c.name, "status": c.status.value, "detail": c.detail, "fix": c.fix}
                for c in self.checks
            ],
            "sensors": [
                {"name": s.name, "computer": s.computer, "may_retrieve": s.may_retrieve, "via": s.via}
                for s in self.sensors
            ],
        }


@dataclass(frozen=True)
class Verdict:
    """The checks that need the directory, or why the directory could not be read."""

    facts: GmsaFacts | None
    unavailable: str | None = None
    unreachable: bool = False
    host_checks: tuple[Check, ...] = field(default_factory=tuple)


def mentions_gmsa(line: str | None) -> bool:
    """Whether a sensor log line is one of the gMSA retrieval failures."""
    text = (line or "").lower()
    return any(signature.lower() in text for signature in GMSA_LOG_SIGNATURES)
