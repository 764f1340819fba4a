"""Who may retrieve a gMSA's password: the descriptor's principals expanded into the sensors' computers.

SIDs are resolved to their objects; groups are expanded transitively (nested groups through their
`memberOf` back-links, computers by `member` and by primary group) and each sensor's computer account,
found by `dNSHostName`, is looked for on the way. The path is kept so that an operator sees which group
let a computer in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ldap3 import SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from bot.config import AccountConfig
from bot.gmsa.core import TICKET_LIFETIME, GmsaSensor, Membership, SensorAccess
from bot.gmsa.entries import first, generalized_time, integer, object_sid, search, values

UF_SERVER_TRUST_ACCOUNT = 0x2000
EVERYONE_SIDS = {"S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users"}
ENTERPRISE_DCS_SID = "S-1-5-9"
_PRINCIPAL_ATTRIBUTES = ["objectClass", "sAMAccountName", "objectSid", "member", "whenChanged"]


@dataclass(frozen=True)
class _Computer:
    sensor: str
    sam: str
    dn: str
    primary_group: str | None  # the SID of its primary group (Domain Computers, Domain Controllers)
    is_dc: bool


def _find_computer(conn: Connection, base: str, sensor: GmsaSensor) -> _Computer | None:
    hosts = "".join(f"(dNSHostName={escape_filter_chars(h)})" for h in sensor.host_names)
    found = search(
        conn,
        base,
        f"(&(objectClass=computer)(!(objectClass=msDS-GroupManagedServiceAccount))(|{hosts}))",
        SUBTREE,
        ["sAMAccountName", "objectSid", "primaryGroupID", "userAccountControl"],
    )
    if len(found) != 1:
        return None
    entry = found[0]
    sid, rid = object_sid(entry), integer(entry, "primaryGroupID")
    domain_sid = sid.rsplit("-", 1)[0] if sid else None
    return _Computer(
        sensor=sensor.name,
        sam=first(entry, "sAMAccountName") or f"{sensor.name}$",
        dn=str(entry.get("dn")),
        primary_group=f"{domain_sid}-{rid}" if domain_sid and rid else None,
        is_dc=bool((integer(entry, "userAccountControl") or 0) & UF_SERVER_TRUST_ACCOUNT),
    )


@dataclass(frozen=True)
class _Reached:
    via: str
    joined_recently: str | None


class _Walk:
    """Expands principals into the sensor computers they contain, remembering the group path."""

    def __init__(self, conn: Connection, base: str, computers: list[_Computer], now: datetime) -> None:
        self.conn, self.base, self.computers, self.now = conn, base, computers, now
        self.names: dict[str, str] = {}  # SID -> name of each principal in the descriptor
        self.groups: set[str] = set()  # the SIDs among them that are groups

    def resolve(self, sid: str) -> dict[str, object] | None:
        found = search(
            self.conn, self.base, f"(objectSid={escape_filter_chars(sid)})", SUBTREE, _PRINCIPAL_ATTRIBUTES
        )
        return found[0] if found else None

    def reach(self, sids: tuple[str, ...]) -> dict[str, _Reached]:
        """sensor name -> how its computer is reached from one of `sids`."""
        reached: dict[str, _Reached] = {}
        for sid in sids:
            if sid in EVERYONE_SIDS:
                self.names[sid] = EVERYONE_SIDS[sid]
                for computer in self.computers:
                    reached.setdefault(computer.sensor, _Reached(EVERYONE_SIDS[sid], None))
                continue
            if sid == ENTERPRISE_DCS_SID:
                self.names[sid] = "Enterprise Domain Controllers"
                for computer in self.computers:
                    if computer.is_dc:
                        reached.setdefault(computer.sensor, _Reached("Enterprise Domain Controllers", None))
                continue
            entry = self.resolve(sid)
            if entry is None:
                self.names[sid] = sid
                continue
            name = first(entry, "sAMAccountName") or sid
            self.names[sid] = name
            if "group" in [c.lower() for c in values(entry, "objectClass")]:
                self.groups.add(sid)
                for sensor, how in self._expand(entry).items():
                    reached.setdefault(sensor, how)
            for computer in self.computers:
                if computer.dn.lower() == str(entry.get("dn")).lower():
                    reached.setdefault(computer.sensor, _Reached("direct", None))
        return reached

    def _expand(self, group: dict[str, object]) -> dict[str, _Reached]:
        reached: dict[str, _Reached] = {}
        queue: deque[tuple[dict[str, object], tuple[str, ...]]] = deque(
            [(group, (first(group, "sAMAccountName") or "?",))]
        )
        seen = {str(group.get("dn")).lower()}
        while queue:
            entry, path = queue.popleft()
            members = {m.lower() for m in values(entry, "member")}
            changed = generalized_time(first(entry, "whenChanged"))
            recent = path[-1] if changed and self.now - changed < TICKET_LIFETIME else None
            sid = object_sid(entry)
            for computer in self.computers:
                if computer.sensor not in reached and (
                    computer.dn.lower() in members or (sid is not None and computer.primary_group == sid)
                ):
                    reached[computer.sensor] = _Reached(" > ".join(path), recent)
            dn = escape_filter_chars(str(entry.get("dn")))
            for child in search(
                self.conn, self.base, f"(&(objectClass=group)(memberOf={dn}))", SUBTREE, _PRINCIPAL_ATTRIBUTES
            ):
                child_dn = str(child.get("dn")).lower()
                if child_dn not in seen:
                    seen.add(child_dn)
                    queue.append((child, (*path, first(child, "sAMAccountName") or child_dn)))
        return reached


@dataclass(frozen=True)
class _Expansion:
    """Where the descriptor's principals lead: sensor name -> how it is reached."""

    allowed: dict[str, _Reached]
    denied: dict[str, _Reached]
    join_group: str | None  # the first allowed group: the one a missing sensor should join
    unresolved: tuple[str, ...]  # allowed SIDs not found in this domain (another domain's groups)


def _not_reached(account: AccountConfig, sensor: str, computer: str, expansion: _Expansion) -> SensorAccess:
    group = expansion.join_group
    where = f"is not in {group}" if group else "is not among the allowed principals"
    if expansion.unresolved:
        return SensorAccess(
            sensor,
            computer,
            None,
            detail=f"{sensor}: its computer account {where} of this domain, and "
            f"{', '.join(expansion.unresolved)} could not be resolved here (another domain's group?): "
            "check whether it contains the computer.",
        )
    return SensorAccess(
        sensor,
        computer,
        False,
        detail=f"{sensor} may not retrieve {account.username}: its computer account {where}.",
    )


def _access(
    account: AccountConfig, sensor: GmsaSensor, computer: _Computer | None, expansion: _Expansion
) -> SensorAccess:
    if computer is None:
        names = " or ".join(sensor.host_names)
        return SensorAccess(
            sensor.name, None, None, detail=f"{sensor.name}: no computer account with dNSHostName {names}."
        )
    if sensor.name in expansion.denied:
        path = expansion.denied[sensor.name].via
        named = "by name" if path == "direct" else f"through {path}"
        return SensorAccess(
            sensor.name,
            computer.sam,
            False,
            path,
            detail=f"{sensor.name} may not retrieve {account.username}: a Deny entry names its computer "
            f"account {named}.",
        )
    reached = expansion.allowed.get(sensor.name)
    if reached is None:
        return _not_reached(account, sensor.name, computer.sam, expansion)
    detail = (
        f"{sensor.name} joined {reached.joined_recently} less than 10 hours ago and may still hold a "
        "Kerberos ticket without it."
        if reached.joined_recently
        else ""
    )
    return SensorAccess(sensor.name, computer.sam, True, reached.via, reached.joined_recently, detail)


def retrieval(
    conn: Connection,
    base: str,
    account: AccountConfig,
    membership: Membership,
    sensors: Sequence[GmsaSensor],
    now: datetime,
) -> tuple[tuple[SensorAccess, ...], tuple[str, ...], str | None]:
    found = {s.name: _find_computer(conn, base, s) for s in sensors}
    walk = _Walk(conn, base, [c for c in found.values() if c is not None], now)
    allowed = walk.reach(membership.allowed)
    expansion = _Expansion(
        allowed,
        walk.reach(membership.denied),
        next((walk.names[sid] for sid in membership.allowed if sid in walk.groups), None),
        tuple(sid for sid in membership.allowed if walk.names[sid] == sid),
    )
    names = tuple(walk.names[sid] for sid in membership.allowed)
    access = tuple(_access(account, s, found[s.name], expansion) for s in sensors)
    return access, names, expansion.join_group
