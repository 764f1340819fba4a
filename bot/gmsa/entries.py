"""Reading ldap3 search results as the gMSA checks need them (no schema: raw values, decoded here)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ldap3 import Connection
from winacl.dtyp.sid import SID


def values(entry: dict[str, object], name: str) -> list[str]:
    attributes = entry.get("attributes")
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def first(entry: dict[str, object], name: str) -> str | None:
    found = values(entry, name)
    return found[0] if found else None


def raw(entry: dict[str, object], name: str) -> bytes | None:
    by_name = entry.get("raw_attributes")
    found = by_name.get(name) if isinstance(by_name, Mapping) else None
    return found[0] if isinstance(found, list) and found else None


def integer(entry: dict[str, object], name: str) -> int | None:
    value = first(entry, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def object_sid(entry: dict[str, object]) -> str | None:
    value = raw(entry, "objectSid")
    return str(SID.from_bytes(value)) if value else None


def generalized_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.split(".")[0].rstrip("Z"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def entries(conn: Connection) -> list[dict[str, object]]:
    return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]


def search(
    conn: Connection, base: str, query: str, scope: str, attributes: list[str]
) -> list[dict[str, object]]:
    conn.search(base, query, scope, attributes=attributes)
    return entries(conn)
