"""Active Directory bind failures, decoded into a reason and a sentence an operator understands.

AD answers a failed simple bind with LDAP result 49 and a diagnostic message such as
`80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1`; the `data`
sub-code says why (Windows error codes ERROR_LOGON_FAILURE 0x52e, ERROR_ACCOUNT_DISABLED 0x533, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a connection test did not pass. The value is stable: it goes into audit rows and JSON."""

    WRONG_PASSWORD = "wrong_password"
    USER_NOT_FOUND = "user_not_found"
    LOGON_HOURS = "logon_hours"
    WORKSTATION_RESTRICTED = "workstation_restricted"
    PASSWORD_EXPIRED = "password_expired"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_EXPIRED = "account_expired"
    MUST_CHANGE_PASSWORD = "must_change_password"
    ACCOUNT_LOCKED = "account_locked"
    STALE_PASSWORD = "stale_password"  # the bind passed, the KDC refused: AD's previous password
    KERBEROS_UNCONFIRMED = "kerberos_unconfirmed"  # the bind passed, no KDC confirmed it, one is required
    CREDENTIAL_REJECTED = "credential_rejected"
    BIND_REFUSED = "bind_refused"
    DC_UNREACHABLE = "dc_unreachable"
    TLS_ERROR = "tls_error"
    NO_ANSWER = "no_answer"
    GUARD_LIMIT = "guard_limit"
    GUARD_UNAVAILABLE = "guard_unavailable"  # the lockout guard cannot count the test: nothing sent
    NEAR_LOCKOUT = "near_lockout"
    BUSY = "busy"


@dataclass(frozen=True)
class BindFailure:
    reason: Reason
    message: str
    ad_code: str | None


_AD_CODES: dict[str, tuple[Reason, str]] = {
    "52e": (Reason.WRONG_PASSWORD, "The password is wrong (or the account does not exist)."),
    "525": (Reason.USER_NOT_FOUND, "The account does not exist in the domain."),
    "530": (Reason.LOGON_HOURS, "The account is not allowed to log on at this time (logon hours)."),
    "531": (Reason.WORKSTATION_RESTRICTED, "The account is not allowed to log on from this computer."),
    "532": (Reason.PASSWORD_EXPIRED, "The password has expired in Active Directory."),
    "533": (Reason.ACCOUNT_DISABLED, "The account is disabled in Active Directory."),
    "701": (Reason.ACCOUNT_EXPIRED, "The account has expired in Active Directory."),
    "773": (
        Reason.MUST_CHANGE_PASSWORD,
        "The account must change its password at next logon: set a password in AD without that flag.",
    ),
    "775": (
        Reason.ACCOUNT_LOCKED,
        "The account is locked out in Active Directory: unlock it before testing again.",
    ),
}

STALE_PASSWORD_MESSAGE = (
    "AD still accepts this password for a few minutes because it was the account's previous one; "
    "it is not the current password."
)

_DATA_CODE = re.compile(r"\bdata ([0-9a-fA-F]{1,8})\b")

INVALID_CREDENTIALS = 49


def decode_bind_failure(result_code: int, diagnostic: str) -> BindFailure:
    """Decode an LDAP bind result that is not success (the diagnostic never holds the password)."""
    match = _DATA_CODE.search(diagnostic or "")
    code = match.group(1).lower() if match else None
    if code in _AD_CODES:
        reason, message = _AD_CODES[code]
        return BindFailure(reason, message, code)
    if result_code == INVALID_CREDENTIALS:
        detail = f" (AD code {code})" if code else ""
        return BindFailure(
            Reason.CREDENTIAL_REJECTED, f"The domain controller rejected the credential{detail}.", code
        )
    return BindFailure(
        Reason.BIND_REFUSED,
        f"The domain controller refused the bind (LDAP result {result_code}: {diagnostic or 'no detail'}).",
        code,
    )
