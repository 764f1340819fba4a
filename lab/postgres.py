"""A throwaway PostgreSQL cluster on loopback, for the audit trail's `[audit] url` tests.

It uses the distribution's server binaries (Debian: package `postgresql`). PostgreSQL refuses to run
as root, so under root the cluster belongs to the `postgres` system user and runs through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SUPERUSER = "atp"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL `bin` directory that has initdb and postgres, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresCluster:
    """`start()` initialises and starts a cluster with a password-protected superuser; `stop()` removes it."""

    def __init__(self, password: str) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = binaries
        self.password = password
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="atp-bot-pg-"))
        self._as_root = os.geteuid() == 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A SQLAlchemy URL without the password (it goes in through `[audit] password_env`)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL, without the password."""
        url = make_url(self.url)
        admin = create_engine(url.set(password=self.password), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return url.set(database=name).render_as_string(hide_password=False)

    def _command(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)

    def start(self) -> PostgresCluster:
        data, pwfile = self.directory / "data", self.directory / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            self._command(
                str(self.bin / "initdb"),
                "-D", str(data),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth", "scram-sha-256",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        pwfile.unlink()
        self._process = subprocess.Popen(
            self._command(
                str(self.bin / "postgres"),
                "-D", str(data),
                "-k", str(self.directory),
                "-c", "listen_addresses=127.0.0.1",
                "-p", str(self.port),
                "-c", "fsync=off",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self._accepts_connections():
                return self
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the PostgreSQL test cluster did not start")
            time.sleep(0.05)

    def _accepts_connections(self) -> bool:
        """Whether the server takes sessions: it listens while still "starting up" (and then refuses
        them), so an open port is not enough."""
        ready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(ready, check=False, capture_output=True, timeout=10).returncode == 0

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            # Signal the postmaster itself: runuser does not pass signals on to it.
            pid = self._postmaster_pid()
            if pid is not None:
                os.kill(pid, signal.SIGINT)  # fast shutdown
            else:
                self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
