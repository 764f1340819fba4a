"""Confirms with the domain's KDC that a password which passed the LDAP bind is the *current* one.

Why: after a password change, AD (and Samba) keep accepting the previous password for NTLM-style logons
for a while (`OldPasswordAllowedPeriod`, 60 minutes by default), and an LDAP simple bind is served that
way. Kerberos pre-authentication never accepts a previous password, so one AS exchange with the KDC
(every DC is one, port 88) tells a stale password from the current one. No ticket is kept: the exchange
writes no credential cache, and the krb5.conf written for it (in a private temporary directory) holds
no secret.

Only AES enctypes are offered (and so accepted): a KDC, or a man-in-the-middle on port 88, that offers
nothing else gets no pre-authentication, never a timestamp keyed with RC4 (the NT hash) or DES3.

When no KDC gives a verdict, the result always carries a warning that the password was not confirmed by
Kerberos (with `pwdLastSet`: a change in AD within the window makes the bind's verdict doubtful), or,
with `kerberos_check = "required"`, the test fails (bot.directory.bind).
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import krb5
from ldap3 import BASE, Connection
from pydantic import SecretStr

from bot.config import AccountConfig

log = logging.getLogger(__name__)

KDC_PORT = 88
# AD's default OldPasswordAllowedPeriod (Samba's "old password allowed period" has the same default).
OLD_PASSWORD_WINDOW = timedelta(minutes=60)

_KRB5_ERROR_BASE = -1765328384  # MIT's ERROR_TABLE_BASE_krb5
_PREAUTH_FAILED = _KRB5_ERROR_BASE + 24  # KDC_ERR_PREAUTH_FAILED: "Password incorrect"
_BAD_INTEGRITY = _KRB5_ERROR_BASE + 31  # KRB_AP_ERR_BAD_INTEGRITY: a wrong key without pre-auth
_KDC_UNREACHABLE = -1765328228  # KRB5_KDC_UNREACH: "Cannot contact any KDC for requested realm"
_NO_COMMON_ENCTYPE = (
    _KRB5_ERROR_BASE + 14,  # KDC_ERR_ETYPE_NOSUPP: the KDC has no AES key for the account
    _KRB5_ERROR_BASE + 150,  # KRB5_PROG_ETYPE_NOSUPP: the KDC offered no enctype the library knows
    _KRB5_ERROR_BASE + 237,  # KRB5_CONFIG_ETYPE_NOSUPP: none of those offered is in our (AES) list
)
# aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96, aes256-cts-hmac-sha384-192, aes128-cts-hmac-sha256-128:
# the only enctypes offered, so no KDC (or man-in-the-middle on port 88) can ask for a timestamp keyed
# with RC4 (the NT hash) or DES3, and the library accepts no reply in another one.
AES_ENCTYPES = (18, 17, 20, 19)
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

# KRB5_CONFIG is read by the library when a context is made: one context is made at a time.
_context_lock = threading.Lock()


UNCONFIRMED = "not confirmed as the current password by Kerberos"


class KdcAnswer(StrEnum):
    CONFIRMED = "confirmed"  # the KDC accepted the password: it is the current one
    REJECTED = "rejected"  # pre-authentication failed: not the current password
    NO_ANSWER = "no_answer"  # a KDC received the request but gave no verdict in time
    UNAVAILABLE = "unavailable"  # no KDC could be reached, or it could not judge the password


@dataclass(frozen=True)
class KdcVerdict:
    answer: KdcAnswer
    detail: str  # the library's text (never holds the password)

    @property
    def may_count_against_lockout(self) -> bool:
        """AD counted (or may have counted) a bad password: the lockout guard must count it too."""
        return self.answer in (KdcAnswer.REJECTED, KdcAnswer.NO_ANSWER)


@dataclass(frozen=True)
class DirectoryIdentity:
    """What the bound account reads about itself: its Kerberos principal and when AD last set its
    password."""

    principal: str
    password_last_set: datetime | None


@dataclass(frozen=True)
class CurrentPasswordCheck:
    """The verdict on a password that passed the bind: stale, or current (with warnings/notes)."""

    verdict: KdcVerdict
    stale: bool
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def confirmed(self) -> bool:
        return self.verdict.answer is KdcAnswer.CONFIRMED


def filetime(value: int) -> datetime:
    return _FILETIME_EPOCH + timedelta(microseconds=value // 10)


def realm_of(dn: str | None, fallback_domain: str) -> str:
    """The Kerberos realm: the DNS domain of the entry's DN (`DC=` parts), upper-cased."""
    parts = [rdn.split("=", 1)[1] for rdn in (dn or "").split(",") if rdn.strip().upper().startswith("DC=")]
    return (".".join(parts) if parts else fallback_domain).upper()


def _single(attributes: dict[str, object], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value in (None, "") else str(value)


def read_identity(conn: Connection, account: AccountConfig, dn: str | None) -> DirectoryIdentity:
    """The bound account's principal (`sAMAccountName@REALM`) and `pwdLastSet`, read on `conn`."""
    attributes: dict[str, object] = {}
    if dn and conn.search(dn, "(objectClass=*)", BASE, attributes=["sAMAccountName", "pwdLastSet"]):
        attributes = dict(conn.response[0].get("attributes", {})) if conn.response else {}
    sam = _single(attributes, "sAMAccountName") or account.name.user
    last_set = _single(attributes, "pwdLastSet")
    when = filetime(int(last_set)) if last_set and last_set.isdigit() and int(last_set) > 0 else None
    return DirectoryIdentity(f"{sam}@{realm_of(dn, account.name.domain)}", when)


def kdc_hosts(account: AccountConfig) -> list[str]:
    """`host:port` of each KDC: `kdc` when configured, else every domain controller on port 88."""
    if account.kdc:
        return [kdc if ":" in kdc else f"{kdc}:{KDC_PORT}" for kdc in account.kdc]
    hosts = dict.fromkeys(dc.host for dc in account.dcs)
    return [f"{host}:{KDC_PORT}" for host in hosts]


def krb5_conf(realm: str, kdcs: list[str]) -> str:
    """A krb5.conf for one realm: no DNS, TCP only (one bounded exchange, no UDP retries)."""
    kdc_lines = "".join(f"    kdc = {kdc}\n" for kdc in kdcs)
    return (
        "[libdefaults]\n"
        f"  default_realm = {realm}\n"
        "  dns_lookup_kdc = false\n"
        "  dns_lookup_realm = false\n"
        "  dns_canonicalize_hostname = false\n"
        "  rdns = false\n"
        "  udp_preference_limit = 1\n"
        "[realms]\n"
        f"  {realm} = {{\n{kdc_lines}  }}\n"
    )


def _context(config: Path) -> krb5.Context:
    with _context_lock:
        previous = os.environ.get("KRB5_CONFIG")
        os.environ["KRB5_CONFIG"] = str(config)
        try:
            return krb5.init_context()
        finally:
            if previous is None:
                del os.environ["KRB5_CONFIG"]
            else:
                os.environ["KRB5_CONFIG"] = previous


def _classify(error: krb5.Krb5Error) -> KdcVerdict:
    detail = str(error) or f"Kerberos error {error.err_code}"
    if error.err_code in (_PREAUTH_FAILED, _BAD_INTEGRITY):
        return KdcVerdict(KdcAnswer.REJECTED, detail)
    if error.err_code in _NO_COMMON_ENCTYPE:
        detail = "the KDC offered no AES encryption type, the only ones accepted; no pre-authentication sent"
    return KdcVerdict(KdcAnswer.UNAVAILABLE, detail)


def _as_exchange(principal: str, password: SecretStr, kdcs: list[str]) -> KdcVerdict:
    """One AS exchange with pre-authentication; the ticket is dropped at once."""
    realm = principal.rpartition("@")[2]
    with tempfile.TemporaryDirectory(prefix="atp-bot-krb5-") as private:
        config = Path(private) / "krb5.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(krb5_conf(realm, kdcs))
        try:
            context = _context(config)
            client = krb5.parse_name_flags(context, principal.encode())
            options = krb5.get_init_creds_opt_alloc(context)
            krb5.get_init_creds_opt_set_etype_list(options, AES_ENCTYPES)
            krb5.get_init_creds_password(
                context, client, options, password=password.get_secret_value().encode()
            )
        except krb5.Krb5Error as error:
            return _classify(error)
    return KdcVerdict(KdcAnswer.CONFIRMED, "the KDC accepted the password")


def ask_kdc(principal: str, password: SecretStr, kdcs: list[str], timeout: float) -> KdcVerdict:
    """The KDC's verdict on `password`, within `timeout` seconds (the library's own retries can take
    much longer against a KDC that accepts connections but never answers)."""
    answers: queue.Queue[KdcVerdict] = queue.Queue(maxsize=1)

    def exchange() -> None:
        try:
            answers.put(_as_exchange(principal, password, kdcs))
        except Exception as exc:  # noqa: BLE001 - any failure is "no verdict", reported by type only
            answers.put(KdcVerdict(KdcAnswer.UNAVAILABLE, type(exc).__name__))

    threading.Thread(target=exchange, name="kdc-check", daemon=True).start()
    try:
        return answers.get(timeout=timeout)
    except queue.Empty:
        return KdcVerdict(KdcAnswer.NO_ANSWER, f"no answer from the KDC within {timeout:.0f} s")


def _unconfirmed(verdict: KdcVerdict, identity: DirectoryIdentity, now: datetime) -> CurrentPasswordCheck:
    """No KDC verdict: always a warning; `pwdLastSet` says how much doubt (a change in AD within the window
    makes the bind unreliable: the previous password would have passed it too)."""
    warning = f"The password was {UNCONFIRMED}: no KDC gave a verdict ({verdict.detail})."
    changed = identity.password_last_set
    if changed is not None and now - changed < OLD_PASSWORD_WINDOW:
        minutes = int(OLD_PASSWORD_WINDOW.total_seconds() // 60)
        warning += (
            f" The account's password was changed in AD at {changed:%Y-%m-%d %H:%M} UTC, less than "
            f"{minutes} minutes ago: AD also accepts the previous password for {minutes} minutes after a "
            "change, so this may be the previous one. The drift check keeps watching."
        )
        return CurrentPasswordCheck(verdict, stale=False, warnings=(warning,))
    since = f"last changed in AD at {changed:%Y-%m-%d %H:%M} UTC" if changed else "last change unknown"
    note = f"the password was {since}"
    return CurrentPasswordCheck(verdict, stale=False, warnings=(warning,), notes=(note,))


def check_current_password(
    conn: Connection, account: AccountConfig, dn: str | None, password: SecretStr
) -> CurrentPasswordCheck:
    """After a passed bind on `conn`: is `password` the account's current password?"""
    identity = read_identity(conn, account, dn)
    timeout = account.connect_timeout + account.receive_timeout
    verdict = ask_kdc(identity.principal, password, kdc_hosts(account), timeout)
    log.info("account %s: KDC check of %s: %s", account.id, identity.principal, verdict.answer)
    if verdict.answer is KdcAnswer.CONFIRMED:
        return CurrentPasswordCheck(verdict, stale=False)
    if verdict.answer is KdcAnswer.REJECTED:
        return CurrentPasswordCheck(verdict, stale=True)
    return _unconfirmed(verdict, identity, datetime.now(UTC))
