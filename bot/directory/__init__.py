"""Active Directory: the bind test, AD error codes, the lockout guard, the password policy."""

from bot.directory.ad_errors import Reason
from bot.directory.bind import ConnectionTestResult, Outcome, run_connection_test
from bot.directory.lockout import AccountBusy, AccountLease, AccountLocks, LockoutGuard
from bot.directory.lookup import (
    ExpiryUnavailable,
    LockoutPrecheck,
    LookupUnavailable,
    PasswordExpiry,
    PrecheckUnavailable,
    lockout_precheck,
    lookup_connection,
    naming_context,
    read_password_expiry,
)
from bot.directory.lookup_guard import LookupBlocked, LookupGuard, LookupSuspension, reading_with
from bot.directory.password_policy import password_problem

__all__ = [
    "AccountBusy",
    "AccountLease",
    "AccountLocks",
    "ConnectionTestResult",
    "ExpiryUnavailable",
    "LockoutGuard",
    "LockoutPrecheck",
    "LookupBlocked",
    "LookupGuard",
    "LookupSuspension",
    "LookupUnavailable",
    "Outcome",
    "PasswordExpiry",
    "PrecheckUnavailable",
    "Reason",
    "lockout_precheck",
    "lookup_connection",
    "naming_context",
    "password_problem",
    "read_password_expiry",
    "reading_with",
    "run_connection_test",
]
