"""The hash chain: a row's canonical content, its plain or keyed hash, and the head's HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from bot.audit.key import AuditKey

GENESIS_HASH = "0" * 64


def _canonical(values: dict[str, Any]) -> bytes:
    """A row's content, its id and the previous hash as canonical JSON."""
    return json.dumps(
        [
            values["id"],
            values["time"],
            values["actor"],
            values["action"],
            values["account"],
            values["outcome"],
            values["reason"],
            values["detail"],
            values["prev_hash"],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def row_hash(values: dict[str, Any]) -> str:
    """The unkeyed hash of a row: SHA-256 over its canonical JSON."""
    return hashlib.sha256(_canonical(values)).hexdigest()


def keyed_row_hash(key: AuditKey, values: dict[str, Any]) -> str:
    """The keyed hash of a row: HMAC-SHA256 over its canonical JSON."""
    return key.mac(_canonical(values))


def head_mac(key: AuditKey, last_id: int, last_hash: str, keyed_from: int) -> str:
    """The head's HMAC. Its input starts with a string, a row's with a number: neither passes as the other."""
    message = json.dumps(["audit-head", last_id, last_hash, keyed_from], separators=(",", ":"))
    return key.mac(message.encode("ascii"))


def same_digest(a: str | None, b: str) -> bool:
    """Compare hashes in constant time; a missing one never matches."""
    return a is not None and hmac.compare_digest(a, b)
