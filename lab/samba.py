"""A real Active Directory on loopback: a throwaway Samba AD DC in a temporary directory.

Provisioning takes about 4 s and start-up a few more. The DC listens on its own loopback address with a
certificate from the lab CA, so LDAPS is verified exactly as against a production DC. Accounts are made
over LDAPS as Administrator, the way an AD admin tool would.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ldap3 import BASE, MODIFY_REPLACE, SIMPLE, Connection, Server, Tls

from lab.tlsca import TlsFiles, issue_ca_and_server_cert

log = logging.getLogger(__name__)

UF_ACCOUNTDISABLE = 0x2
UF_NORMAL_ACCOUNT = 0x200
UF_DONT_EXPIRE_PASSWD = 0x10000
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) on Linux, less the terminating NUL
LONGEST_SOCKET = "state/winbindd_privileged/pipe"  # the longest socket path in a running DC's directory
_MINUTE_100NS = 60 * 10_000_000
SYSTEM_PYTHON = "/usr/bin/python3"  # has Samba's own Python bindings
# Writes pwdLastSet in sam.ldb through Samba's bindings, with the control that bypasses its password module
# (DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID): the keys stay as they are.
_BACKDATE_PWD_LAST_SET = (
    "import sys, ldb\n"
    "from samba.auth import system_session\n"
    "from samba.dsdb import DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID\n"
    "from samba.param import LoadParm\n"
    "from samba.samdb import SamDB\n"
    "smb_conf, sam_ldb, dn, filetime = sys.argv[1:]\n"
    "lp = LoadParm()\n"
    "lp.load(smb_conf)\n"
    "db = SamDB(url=sam_ldb, session_info=system_session(), lp=lp)\n"
    "change = ldb.Message(ldb.Dn(db, dn))\n"
    'change["pwdLastSet"] = ldb.MessageElement(filetime, ldb.FLAG_MOD_REPLACE, "pwdLastSet")\n'
    'db.modify(change, controls=[f"local_oid:{DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID}:0"])\n'
)


class SambaUnavailable(Exception):
    pass


def missing_binaries() -> str | None:
    """None when the Samba AD DC can run here, else what is missing."""
    absent = [name for name in ("samba", "samba-tool") if shutil.which(name) is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed (apt-get install samba samba-ad-dc samba-ad-provision "
            "winbind krb5-user ldap-utils)"
        )
    if os.geteuid() != 0:
        return "the Samba AD DC needs root"
    return None


@dataclass(frozen=True)
class LabUser:
    name: str
    password: str
    upn: str
    dn: str


def _socket_path_problem(workdir: Path) -> str | None:
    """Samba's services listen on Unix sockets inside its directory; a socket path longer than the kernel
    allows makes one fail (the LDAP server: `NT_STATUS_OBJECT_PATH_INVALID`), and the DC with it."""
    longest = workdir.absolute() / LONGEST_SOCKET
    if len(str(longest)) <= SOCKET_PATH_MAX:
        return None
    room = SOCKET_PATH_MAX - len(str(longest)) + len(str(workdir.absolute()))
    return (
        f"the DC's directory {workdir.absolute()} is too long for Samba's Unix sockets "
        f"({len(str(workdir.absolute()))} characters, at most {room} fit): choose a shorter lab directory"
    )


class SambaDC:
    """One Samba AD DC process serving a throwaway domain on `address`."""

    def __init__(
        self,
        workdir: Path,
        address: str,
        realm: str = "CONTOSO.TEST",
        netbios: str = "CONTOSO",
        admin_password: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.address = address
        self.realm = realm.upper()
        self.netbios = netbios.upper()
        self.admin_password = admin_password or f"Adm-{secrets.token_urlsafe(12)}-7q"
        self.dns_domain = realm.lower()
        self.base_dn = ",".join(f"DC={part}" for part in self.dns_domain.split("."))
        self.tls: TlsFiles | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.address}:636"

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.address}:389"

    @property
    def ca_file(self) -> Path:
        assert self.tls is not None, "start the DC first"
        return self.tls.ca_file

    @property
    def log_file(self) -> Path:
        return self.workdir / "samba.log"

    def provision(self) -> None:
        reason = _socket_path_problem(self.workdir) or missing_binaries()
        if reason:
            raise SambaUnavailable(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = issue_ca_and_server_cert(self.workdir / "tls", [f"dc1.{self.dns_domain}"], [self.address])
        result = subprocess.run(
            [
                "samba-tool", "domain", "provision",
                f"--realm={self.realm}", f"--domain={self.netbios}",
                "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
                f"--adminpass={self.admin_password}",
                f"--targetdir={self.workdir}",
                f"--option=interfaces={self.address}",
                "--option=bind interfaces only=yes",
                f"--option=pid directory={self.workdir / 'run'}",
                f"--option=tls keyfile={self.tls.key_file}",
                f"--option=tls certfile={self.tls.cert_file}",
                f"--option=tls cafile={self.tls.ca_file}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise SambaUnavailable(f"samba-tool domain provision failed: {result.stderr[-2000:]}")

    def start(self, timeout: float = 90.0) -> None:
        with self.log_file.open("ab") as out:
            self._process = subprocess.Popen(
                ["samba", "-s", str(self.workdir / "etc" / "smb.conf"), "-i", "-M", "single"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SambaUnavailable(f"samba exited with {self._process.returncode}: {self._log_tail()}")
            try:
                with self.admin():
                    return
            except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
                time.sleep(0.3)
        self.stop()
        raise SambaUnavailable(f"samba did not answer LDAPS within {timeout:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def __enter__(self) -> SambaDC:
        self.provision()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- administration over LDAPS, as an AD admin tool would do it -----------------------------------

    def _server(self) -> Server:
        tls = Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file), version=ssl.PROTOCOL_TLS_CLIENT
        )
        return Server(self.address, port=636, use_ssl=True, tls=tls, get_info="NO_INFO", connect_timeout=5)

    @contextmanager
    def admin(self) -> Iterator[Connection]:
        conn = Connection(
            self._server(),
            user=f"Administrator@{self.dns_domain}",
            password=self.admin_password,
            authentication=SIMPLE,
            receive_timeout=15,
            check_names=False,
            raise_exceptions=True,
        )
        conn.bind()
        try:
            yield conn
        finally:
            conn.unbind()

    def user_dn(self, name: str) -> str:
        return f"CN={name},CN=Users,{self.base_dn}"

    def create_user(
        self,
        name: str,
        password: str,
        *,
        disabled: bool = False,
        expired: bool = False,
        must_change: bool = False,
        never_expires: bool = False,
    ) -> LabUser:
        upn = f"{name}@{self.dns_domain}"
        dn = self.user_dn(name)
        uac = UF_NORMAL_ACCOUNT | (UF_ACCOUNTDISABLE if disabled else 0)
        uac |= UF_DONT_EXPIRE_PASSWD if never_expires else 0
        with self.admin() as conn:
            conn.add(
                dn,
                ["top", "person", "organizationalPerson", "user"],
                {
                    "sAMAccountName": name,
                    "userPrincipalName": upn,
                    "unicodePwd": f'"{password}"'.encode("utf-16-le"),
                    "userAccountControl": str(uac),
                },
            )
            changes: dict[str, list[tuple[str, list[str]]]] = {}
            if expired:
                past = datetime.now(UTC) - timedelta(days=1)
                changes["accountExpires"] = [(MODIFY_REPLACE, [str(to_filetime(past))])]
            if must_change:
                changes["pwdLastSet"] = [(MODIFY_REPLACE, ["0"])]
            if changes:
                conn.modify(dn, changes)
        return LabUser(name=name, password=password, upn=upn, dn=dn)

    def set_password(self, name: str, password: str) -> None:
        """An admin password reset in AD (what happens when someone changes the account's password)."""
        with self.admin() as conn:
            conn.modify(
                self.user_dn(name),
                {"unicodePwd": [(MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]},
            )

    def samba_tool_reset(self, name: str, password: str) -> None:
        """An admin reset with `samba-tool user setpassword`, as an AD admin of this lab would do it."""
        result = subprocess.run(
            [
                "samba-tool", "user", "setpassword", name, f"--newpassword={password}",
                "-H", f"ldap://{self.address}", "-U", "Administrator", f"--password={self.admin_password}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise SambaUnavailable(f"samba-tool user setpassword failed: {result.stderr[-1000:]}")

    def backdate_password_last_set(self, name: str, when: datetime) -> None:
        """Make the account's password look set at `when`, as for an account whose password was changed
        long ago (AD refuses any `pwdLastSet` but 0 or -1 over LDAP)."""
        smb_conf, sam_ldb = self.workdir / "etc" / "smb.conf", self.workdir / "private" / "sam.ldb"
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", _BACKDATE_PWD_LAST_SET, str(smb_conf), str(sam_ldb), self.user_dn(name),
             str(to_filetime(when))],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise SambaUnavailable(f"cannot set pwdLastSet of {name}: {result.stderr[-1000:]}")

    def set_lockout_policy(
        self, threshold: int, window_minutes: int = 30, duration_minutes: int = 30
    ) -> None:
        with self.admin() as conn:
            conn.modify(
                self.base_dn,
                {
                    "lockoutThreshold": [(MODIFY_REPLACE, [str(threshold)])],
                    "lockOutObservationWindow": [(MODIFY_REPLACE, [str(-window_minutes * _MINUTE_100NS)])],
                    "lockoutDuration": [(MODIFY_REPLACE, [str(-duration_minutes * _MINUTE_100NS)])],
                },
            )

    def attempt_bind(self, user: LabUser | str, password: str) -> dict[str, object]:
        """A bind as some client would do it; returns ldap3's result (used to make bad attempts)."""
        upn = user.upn if isinstance(user, LabUser) else user
        conn = Connection(
            self._server(), user=upn, password=password, authentication=SIMPLE, check_names=False
        )
        conn.open()
        conn.bind()
        result = dict(conn.result)
        conn.unbind()
        return result

    def user_state(self, name: str) -> dict[str, int]:
        """badPwdCount, lockoutTime and the computed lockout flag, as AD reports them."""
        with self.admin() as conn:
            conn.search(
                self.user_dn(name),
                "(objectClass=user)",
                BASE,
                attributes=["badPwdCount", "lockoutTime", "msDS-User-Account-Control-Computed"],
            )
            attributes = conn.response[0]["attributes"] if conn.response else {}
        state = {}
        for key in ("badPwdCount", "lockoutTime", "msDS-User-Account-Control-Computed"):
            value = attributes.get(key)
            if isinstance(value, list):
                value = value[0] if value else 0
            state[key] = int(str(value or 0))
        state["locked"] = int(bool(state["msDS-User-Account-Control-Computed"] & 0x10))
        return state


def to_filetime(moment: datetime) -> int:
    return int((moment - _FILETIME_EPOCH).total_seconds() * 10_000_000)
