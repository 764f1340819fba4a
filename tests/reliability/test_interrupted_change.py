"""A change cut short after its password reached AD, by Ctrl-C or SIGKILL, always leaves one `interrupted`
audit row (Ctrl-C: at once; SIGKILL: at the next start), and the lockout guard's pending attempts agree
with the trail (a `test-connection` stopped by Ctrl-C too). Real peers: the Samba AD DC, real `atp-bot
set-password` and `test-connection` processes.

The moments are controlled: "in the DC test" is after the bind with the new password passed, while the
Kerberos check waits on a KDC that accepts connections and never answers; "in the save" is while another
writer holds the embedded store's database.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from bot.audit import AuditRow, open_audit
from bot.change.journal import ChangeJournal, Phase
from bot.config import Settings, load_settings
from bot.directory import LockoutGuard
from bot.store.embedded import store_path
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, SENSOR_WINRM_PASSWORD_ENV, SENSOR_WINRM_USER, run_cli
from tests.slack_lab import wait_for

pytestmark = pytest.mark.samba

CHANGE = ("set-password", "--account", "svc", "--password-stdin", "--no-checks")
STOPPED_WITHIN = 10  # seconds: generous; the hung KDC would hold the test for 5 minutes


@contextmanager
def hung_kdc() -> Iterator[tuple[int, list[socket.socket]]]:
    """A KDC that accepts connections and never answers: the port, and the connections it accepted."""
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in accepted:
            conn.close()


def write_config(path: Path, state: Path, lab: LabDomain, user: LabUser, account_extra: str = "") -> Path:
    path.write_text(
        f'state_dir = "{state}"\n'
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{lab.dc.ca_file}"\n{account_extra}'
        "[lockout_guard]\nmax_rejections = 10\n",
        encoding="utf-8",
    )
    return path


def start_change(config: Path, command: tuple[str, ...] = CHANGE) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(CANARY + "\n")
    process.stdin.close()
    return process


def stop(process: subprocess.Popen[str], how: signal.Signals) -> tuple[int, str, float]:
    """Send `how`; the exit code, stderr and how long the process took to end."""
    sent = time.monotonic()
    process.send_signal(how)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    took = time.monotonic() - sent
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    return process.returncode, err, took


def interrupted_rows(settings: Settings) -> list[AuditRow]:
    trail = open_audit(settings)
    try:
        verification = trail.verify()
        assert verification.intact, verification.problem
        return [r for r in trail.recent("svc", 500) if r.action == "interrupted"]
    finally:
        trail.engine.dispose()


def pending(settings: Settings) -> int:
    guard = LockoutGuard.for_settings(settings)
    return guard.count("svc").pending


def sensors_toml(sensors: WinRMEmulator) -> str:
    """The emulated sensors, one of which trickles its answers: the follow-up checks wait on it."""
    hung = Host.sensor("hung")
    hung.fault = "trickle"
    sensors.add_host(hung)
    user = SENSOR_WINRM_USER.replace("\\", "\\\\")
    return (
        f'[winrm]\nusername = "{user}"\npassword_env = "{SENSOR_WINRM_PASSWORD_ENV}"\ntransport = "ntlm"\n'
        "[sensor_checks]\nhost_timeout = 600\n"
        + "".join(f'[[sensors]]\nname = "{n}"\nendpoint = "{sensors.endpoint(n)}"\n' for n in sensors.hosts)
    )


def test_a_change_cut_short_after_its_password_reached_ad_always_leaves_one_interrupted_row(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, sensors: WinRMEmulator, tmp_path: Path
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)  # what the person just set in AD
    state = tmp_path / "state"
    normal = write_config(tmp_path / "atp-bot.toml", state, lab_domain, fresh_user)
    settings = load_settings(normal)
    journal = ChangeJournal(state)
    assert run_cli(normal, "store", "init").returncode == 0

    def next_start() -> str:
        done = run_cli(
            normal, "set-password", "--account", "svc", "--password-stdin", "--no-checks", stdin=CANARY
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert journal.entries() == []
        return done.stdout

    def in_the_dc_test(how: signal.Signals, command: tuple[str, ...] = CHANGE) -> tuple[int, str, float]:
        with hung_kdc() as (port, accepted):
            slow = write_config(
                tmp_path / "hung-kdc.toml",
                state,
                lab_domain,
                fresh_user,
                f'kdc = ["127.0.0.1:{port}"]\nreceive_timeout = 300\n',
            )
            process = start_change(slow, command)
            wait_for(lambda: accepted, timeout=30)  # the bind passed: AD has seen the password
            assert [e.phase for e in journal.entries()] == ([Phase.TESTING] if command == CHANGE else [])
            return stop(process, how)

    checking = write_config(tmp_path / "checks.toml", state, lab_domain, fresh_user)
    checking.write_text(checking.read_text(encoding="utf-8") + sensors_toml(sensors), encoding="utf-8")

    def in_the_checks(how: signal.Signals) -> tuple[int, str, float]:
        """Saved and audited, the sensors being checked (one never answers)."""
        asked = sensors.hosts["hung"].counters.requests
        process = start_change(checking, (*CHANGE[:-1], "--portal-done"))  # no terminal: checks need it
        wait_for(lambda: sensors.hosts["hung"].counters.requests > asked, timeout=30)
        assert [e.phase for e in journal.entries()] == [Phase.CHECKING]
        return stop(process, how)

    def in_the_save(how: signal.Signals) -> tuple[int, str, float]:
        with closing(sqlite3.connect(store_path(settings), isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")
            process = start_change(normal)
            wait_for(lambda: [e for e in journal.entries() if e.phase is Phase.SAVING], timeout=30)
            time.sleep(0.2)
            stopped = stop(process, how)
            writer.execute("ROLLBACK")
        return stopped

    # Ctrl-C in the DC test: said, 130, at once, and audited before the process exits.
    code, err, took = in_the_dc_test(signal.SIGINT)
    assert code == 130, err
    assert "atp-bot: interrupted, stopping" in err and "Traceback" not in err
    assert took < STOPPED_WITHIN
    (row,) = interrupted_rows(settings)
    assert (row.outcome, row.reason) == ("error", "not-saved")
    assert "interrupted while testing; nothing was saved" in (row.detail or "")
    assert journal.entries() == []
    assert pending(settings) == 1  # AD saw the password: the guard counts it until the window passes
    next_start()
    assert len(interrupted_rows(settings)) == 1

    # Ctrl-C in the follow-up checks: the saved change's row at once.
    code, err, took = in_the_checks(signal.SIGINT)
    assert code == 130 and took < STOPPED_WITHIN, err
    checks_row = interrupted_rows(settings)[0]
    assert (checks_row.outcome, checks_row.reason) == ("ok", "saved")
    assert "interrupted while checking; the new password had been saved" in (checks_row.detail or "")
    assert journal.entries() == []

    # SIGKILL in the DC test, Ctrl-C and SIGKILL in the save, SIGKILL in the checks: each one row after
    # the next start.
    for moment, how in (
        (in_the_dc_test, signal.SIGKILL),
        (in_the_save, signal.SIGINT),
        (in_the_save, signal.SIGKILL),
        (in_the_checks, signal.SIGKILL),
    ):
        before = len(interrupted_rows(settings))
        code, err, took = moment(how)
        assert code == (130 if how is signal.SIGINT else -signal.SIGKILL), err
        assert took < STOPPED_WITHIN
        told = next_start()
        assert len(interrupted_rows(settings)) == before + 1, (moment.__name__, how)
        if how is signal.SIGKILL:
            assert "AN EARLIER CHANGE WAS INTERRUPTED" in told

    # Ctrl-C in `test-connection` (no change, no journal): the guard counts the test, and so does the trail.
    code, err, took = in_the_dc_test(signal.SIGINT, ("test-connection", *CHANGE[1:-1]))
    assert code == 130 and "atp-bot: interrupted, stopping" in err and took < STOPPED_WITHIN, err

    # The guard's pending attempts are the changes cut short in the DC test, each audited.
    rows = interrupted_rows(settings)
    in_test = [r for r in rows if "interrupted while testing" in (r.detail or "")]
    assert len(rows) == 7 and len(in_test) == 3
    assert pending(settings) == len(in_test)
    assert {r.reason for r in rows} <= {"not-saved", "saved"}
