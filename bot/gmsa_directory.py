"""Reads a gMSA's facts over LDAP with the read-only lookup account (see `bot.gmsa` for the verdicts).

Who may retrieve the password: `msDS-GroupMSAMembership` is decoded into SIDs, each resolved to its
object; groups are expanded transitively (nested groups through their `memberOf` back-links, computers
by `member` and by primary group) and every sensor's computer account, found by `dNSHostName`, is looked
for on the way. The path is kept so that an operator sees which group let a computer in.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ldap3 import BASE, LEVEL, SUBTREE, Connection
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from winacl.dtyp.sid import SID

from bot.config import AccountConfig, SensorConfig
from bot.directory import LookupUnavailable, filetime_to_datetime, lookup_connection, naming_context
from bot.gmsa import (
    TICKET_LIFETIME,
    GmsaFacts,
    GmsaObject,
    KdsKeys,
    Membership,
    MembershipUnreadable,
    SensorAccess,
    Verdict,
    decode_membership,
)

log = logging.getLogger(__name__)

UF_SERVER_TRUST_ACCOUNT = 0x2000
EVERYONE_SIDS = {"S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users"}
ENTERPRISE_DCS_SID = "S-1-5-9"
KDS_KEYS_RDN = "CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services"
_GMSA_ATTRIBUTES = [
    "userAccountControl",
    "pwdLastSet",
    "msDS-SupportedEncryptionTypes",
    "msDS-ManagedPasswordInterval",
    "msDS-GroupMSAMembership",
    "objectSid",
]
_PRINCIPAL_ATTRIBUTES = ["objectClass", "sAMAccountName", "objectSid", "member", "whenChanged"]


def _values(entry: dict[str, object], name: str) -> list[str]:
    attributes = entry.get("attributes")
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _first(entry: dict[str, object], name: str) -> str | None:
    values = _values(entry, name)
    return values[0] if values else None


def _raw(entry: dict[str, object], name: str) -> bytes | None:
    raw = entry.get("raw_attributes")
    values = raw.get(name) if isinstance(raw, Mapping) else None
    return values[0] if isinstance(values, list) and values else None


def _int(entry: dict[str, object], name: str) -> int | None:
    value = _first(entry, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _sid(entry: dict[str, object]) -> str | None:
    raw = _raw(entry, "objectSid")
    return str(SID.from_bytes(raw)) if raw else None


def _generalized_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.split(".")[0].rstrip("Z"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _entries(conn: Connection) -> list[dict[str, object]]:
    return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]


def _search(
    conn: Connection, base: str, query: str, scope: str, attributes: list[str]
) -> list[dict[str, object]]:
    conn.search(base, query, scope, attributes=attributes)
    return _entries(conn)


def read_gmsa(conn: Connection, base: str, account: AccountConfig) -> GmsaObject | None:
    sam = escape_filter_chars(account.username)
    found = _search(
        conn,
        base,
        f"(&(objectClass=msDS-GroupManagedServiceAccount)(sAMAccountName={sam}))",
        SUBTREE,
        _GMSA_ATTRIBUTES,
    )
    if len(found) != 1:
        return None
    entry = found[0]
    pwd_last_set = _int(entry, "pwdLastSet")
    return GmsaObject(
        dn=str(entry.get("dn")),
        user_account_control=_int(entry, "userAccountControl") or 0,
        pwd_last_set=filetime_to_datetime(pwd_last_set) if pwd_last_set and pwd_last_set > 0 else None,
        encryption_types=_int(entry, "msDS-SupportedEncryptionTypes"),
        interval_days=_int(entry, "msDS-ManagedPasswordInterval"),
        membership=_raw(entry, "msDS-GroupMSAMembership"),
        sid=_sid(entry),
    )


def read_kds_keys(conn: Connection) -> KdsKeys:
    """The KDS root keys under the configuration partition's Master Root Keys container."""
    root = _search(conn, "", "(objectClass=*)", BASE, ["configurationNamingContext"])
    configuration = _first(root[0], "configurationNamingContext") if root else None
    if configuration is None:
        raise LookupUnavailable("the configuration partition is not readable", unreachable=False)
    container = f"{KDS_KEYS_RDN},{configuration}"
    if not conn.search(container, "(objectClass=*)", BASE, attributes=["cn"]):
        if (conn.result or {}).get("description") == "noSuchObject":
            return KdsKeys(container=False)
        raise LookupUnavailable(
            f"cannot read {container}: {(conn.result or {}).get('message')}", unreachable=False
        )
    keys = _search(conn, container, "(objectClass=msKds-ProvRootKey)", LEVEL, ["msKds-UseStartTime"])
    effective = [filetime_to_datetime(t) for k in keys if (t := _int(k, "msKds-UseStartTime"))]
    return KdsKeys(container=True, effective=tuple(sorted(effective)), hidden=len(keys) - len(effective))


def sensor_host_names(sensor: SensorConfig, domain: str) -> list[str]:
    """The DNS names a sensor's computer account may carry in `dNSHostName`."""
    names = [sensor.name if "." in sensor.name else f"{sensor.name}.{domain}"]
    host = urlsplit(sensor.endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(host)
    return list(dict.fromkeys(n.lower() for n in names))


@dataclass(frozen=True)
class _Computer:
    sensor: str
    sam: str
    dn: str
    primary_group: str | None  # the SID of its primary group (Domain Computers, Domain Controllers)
    is_dc: bool


def _find_computer(conn: Connection, base: str, sensor: SensorConfig, domain: str) -> _Computer | None:
    hosts = "".join(f"(dNSHostName={escape_filter_chars(h)})" for h in sensor_host_names(sensor, domain))
    found = _search(
        conn,
        base,
        f"(&(objectClass=computer)(!(objectClass=msDS-GroupManagedServiceAccount))(|{hosts}))",
        SUBTREE,
        ["sAMAccountName", "objectSid", "primaryGroupID", "userAccountControl"],
    )
    if len(found) != 1:
        return None
    entry = found[0]
    sid, rid = _sid(entry), _int(entry, "primaryGroupID")
    domain_sid = sid.rsplit("-", 1)[0] if sid else None
    return _Computer(
        sensor=sensor.name,
        sam=_first(entry, "sAMAccountName") or f"{sensor.name}$",
        dn=str(entry.get("dn")),
        primary_group=f"{domain_sid}-{rid}" if domain_sid and rid else None,
        is_dc=bool((_int(entry, "userAccountControl") or 0) & UF_SERVER_TRUST_ACCOUNT),
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
        found = _search(
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
            name = _first(entry, "sAMAccountName") or sid
            self.names[sid] = name
            if "group" in [c.lower() for c in _values(entry, "objectClass")]:
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
            [(group, (_first(group, "sAMAccountName") or "?",))]
        )
        seen = {str(group.get("dn")).lower()}
        while queue:
            entry, path = queue.popleft()
            members = {m.lower() for m in _values(entry, "member")}
            changed = _generalized_time(_first(entry, "whenChanged"))
            recent = path[-1] if changed and self.now - changed < TICKET_LIFETIME else None
            sid = _sid(entry)
            for computer in self.computers:
                if computer.sensor not in reached and (
                    computer.dn.lower() in members or (sid is not None and computer.primary_group == sid)
                ):
                    reached[computer.sensor] = _Reached(" > ".join(path), recent)
            dn = escape_filter_chars(str(entry.get("dn")))
            for child in _search(
                self.conn, self.base, f"(&(objectClass=group)(memberOf={dn}))", SUBTREE, _PRINCIPAL_ATTRIBUTES
            ):
                child_dn = str(child.get("dn")).lower()
                if child_dn not in seen:
                    seen.add(child_dn)
                    queue.append((child, (*path, _first(child, "sAMAccountName") or child_dn)))
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
    account: AccountConfig, sensor: SensorConfig, computer: _Computer | None, expansion: _Expansion
) -> SensorAccess:
    domain = account.domain or account.name.domain
    if computer is None:
        names = " or ".join(sensor_host_names(sensor, domain))
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


def _retrieval(
    conn: Connection,
    base: str,
    account: AccountConfig,
    membership: Membership,
    sensors: list[SensorConfig],
    now: datetime,
) -> tuple[tuple[SensorAccess, ...], tuple[str, ...], str | None]:
    domain = account.domain or account.name.domain
    found = {s.name: _find_computer(conn, base, s, domain) for s in sensors}
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


def _facts(conn: Connection, account: AccountConfig, sensors: list[SensorConfig], now: datetime) -> GmsaFacts:
    base = naming_context(conn, account)
    if base is None:
        raise LookupUnavailable("the domain's naming context is not readable", unreachable=False)
    gmsa = read_gmsa(conn, base, account)
    try:
        kds, kds_problem = read_kds_keys(conn), None
    except LookupUnavailable as problem:
        kds, kds_problem = None, problem.message
    if gmsa is None:
        return GmsaFacts(None, base, kds=kds, kds_problem=kds_problem)
    if gmsa.membership is None:
        return GmsaFacts(
            gmsa,
            base,
            kds=kds,
            kds_problem=kds_problem,
            membership_problem=f"msDS-GroupMSAMembership of {account.username} is empty or not readable by "
            "the lookup account: nobody may retrieve the password, or the lookup account may not see who.",
        )
    try:
        membership = decode_membership(gmsa.membership)
    except MembershipUnreadable as problem:
        return GmsaFacts(
            gmsa,
            base,
            kds=kds,
            kds_problem=kds_problem,
            membership_problem=f"msDS-GroupMSAMembership of {account.username}: {problem}",
        )
    access, names, join_group = _retrieval(conn, base, account, membership, sensors, now)
    return GmsaFacts(gmsa, base, names, join_group, access, kds=kds, kds_problem=kds_problem)


def read_facts(account: AccountConfig, sensors: list[SensorConfig], now: datetime) -> Verdict:
    """Read the gMSA's facts over LDAP; never raises for peer problems (the verdict says what failed)."""
    try:
        with lookup_connection(account) as (dc, conn):
            log.info("account %s: reading the gMSA %s on %s", account.id, account.username, dc)
            return Verdict(_facts(conn, account, sensors, now))
    except LookupUnavailable as problem:
        return Verdict(None, problem.message, problem.unreachable)
    except LDAPException as exc:
        return Verdict(None, f"the directory stopped answering: {type(exc).__name__}", unreachable=True)
