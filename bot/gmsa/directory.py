"""Reads a gMSA's facts over LDAP with the read-only lookup account: the object, who may retrieve its
password (`bot.gmsa.groups`) and the forest's KDS root keys. `bot.gmsa.verdicts` judges them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from ldap3 import BASE, LEVEL, SUBTREE, Connection
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from bot.config import AccountConfig
from bot.directory import LookupGuard, LookupUnavailable, lookup_connection, naming_context
from bot.directory.lookup import filetime_to_datetime
from bot.gmsa.core import (
    GmsaFacts,
    GmsaObject,
    GmsaSensor,
    KdsKeys,
    MembershipUnreadable,
    Verdict,
    decode_membership,
)
from bot.gmsa.entries import first, integer, object_sid, raw, search
from bot.gmsa.groups import retrieval

log = logging.getLogger(__name__)
KDS_KEYS_RDN = "CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services"
_GMSA_ATTRIBUTES = [
    "userAccountControl",
    "pwdLastSet",
    "msDS-SupportedEncryptionTypes",
    "msDS-ManagedPasswordInterval",
    "msDS-GroupMSAMembership",
    "objectSid",
]


def read_gmsa(conn: Connection, base: str, account: AccountConfig) -> GmsaObject | None:
    sam = escape_filter_chars(account.username)
    found = search(
        conn,
        base,
        f"(&(objectClass=msDS-GroupManagedServiceAccount)(sAMAccountName={sam}))",
        SUBTREE,
        _GMSA_ATTRIBUTES,
    )
    if len(found) != 1:
        return None
    entry = found[0]
    pwd_last_set = integer(entry, "pwdLastSet")
    return GmsaObject(
        dn=str(entry.get("dn")),
        user_account_control=integer(entry, "userAccountControl") or 0,
        pwd_last_set=filetime_to_datetime(pwd_last_set) if pwd_last_set and pwd_last_set > 0 else None,
        encryption_types=integer(entry, "msDS-SupportedEncryptionTypes"),
        interval_days=integer(entry, "msDS-ManagedPasswordInterval"),
        membership=raw(entry, "msDS-GroupMSAMembership"),
        sid=object_sid(entry),
    )


def read_kds_keys(conn: Connection) -> KdsKeys:
    """The KDS root keys under the configuration partition's Master Root Keys container."""
    root = search(conn, "", "(objectClass=*)", BASE, ["configurationNamingContext"])
    configuration = first(root[0], "configurationNamingContext") if root else None
    if configuration is None:
        raise LookupUnavailable("the configuration partition is not readable", unreachable=False)
    container = f"{KDS_KEYS_RDN},{configuration}"
    if not conn.search(container, "(objectClass=*)", BASE, attributes=["cn"]):
        if (conn.result or {}).get("description") == "noSuchObject":
            return KdsKeys(container=False)
        raise LookupUnavailable(
            f"cannot read {container}: {(conn.result or {}).get('message')}", unreachable=False
        )
    keys = search(conn, container, "(objectClass=msKds-ProvRootKey)", LEVEL, ["msKds-UseStartTime"])
    effective = [filetime_to_datetime(t) for k in keys if (t := integer(k, "msKds-UseStartTime"))]
    return KdsKeys(container=True, effective=tuple(sorted(effective)), hidden=len(keys) - len(effective))


def _facts(
    conn: Connection, account: AccountConfig, sensors: Sequence[GmsaSensor], now: datetime
) -> GmsaFacts:
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
    access, names, join_group = retrieval(conn, base, account, membership, sensors, now)
    return GmsaFacts(gmsa, base, names, join_group, access, kds=kds, kds_problem=kds_problem)


def read_facts(
    account: AccountConfig, sensors: Sequence[GmsaSensor], now: datetime, lookups: LookupGuard
) -> Verdict:
    """Read the gMSA's facts over LDAP; never raises for peer problems (the verdict says what failed)."""
    try:
        with lookup_connection(account, lookups=lookups) as (dc, conn):
            log.info("account %s: reading the gMSA %s on %s", account.id, account.username, dc)
            return Verdict(_facts(conn, account, sensors, now))
    except LookupUnavailable as problem:
        return Verdict(None, problem.message, problem.unreachable)
    except LDAPException as exc:
        return Verdict(None, f"the directory stopped answering: {type(exc).__name__}", unreachable=True)
