"""What atp-bot accepts as a candidate password before it goes anywhere near a domain controller.

Shared by every face (Slack modal, CLI), so the same input gets the same answer everywhere. Anything
refused here is never tested, so a paste accident never costs a bad-password count in AD.
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 256  # AD accepts up to 256 characters for a password
INVALID_INPUT = "invalid-input"  # the audit reason when a face refuses a candidate password
NOT_TEXT = (
    "The password is not valid text (a stray byte or half of a character, usually from a broken paste "
    "or a file in another encoding): retype it."
)


def _encodable(value: str) -> bool:
    """Lone surrogates (Slack can deliver them, a non-UTF-8 stream decodes to them) cannot be sent to AD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def password_problem(value: str) -> str | None:
    """Why `value` is not acceptable (a sentence for the person typing it), or None."""
    if not value:
        return "Enter the new password."
    if len(value) > MAX_LENGTH:
        return f"The password is longer than {MAX_LENGTH} characters ({len(value)})."
    if not _encodable(value):
        return NOT_TEXT
    if value != value.strip():
        return "The password starts or ends with a space: remove it (usually a copy-paste accident)."
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        return "The password contains control characters (such as a tab or a line break): remove them."
    return None
