"""Why a sensor logs credential errors: a wrong directory service account password, or a gMSA whose
password the sensor may not retrieve. The two need different fixes, so reports and alerts say which."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

ErrorReason = Literal["password", "gmsa"]

# What each reason means for the person who has to fix it.
REASON_TEXT: dict[ErrorReason, str] = {
    "password": "credential error(s)",  # "The supplied credential is invalid.": a wrong password
    "gmsa": (
        "gMSA password retrieval error(s) (the sensor may not retrieve the gMSA's password: "
        "PrincipalsAllowedToRetrieveManagedPassword, KDS root key)"
    ),
}


def error_reason(sample: str | None, gmsa_patterns: Sequence[str]) -> ErrorReason:
    """The reason of the errors found, from the line shown for them (the latest in a forward scan)."""
    if sample and any(pattern.lower() in sample.lower() for pattern in gmsa_patterns):
        return "gmsa"
    return "password"


def describe(count: int, reason: ErrorReason) -> str:
    return f"{count} {REASON_TEXT[reason]}"
