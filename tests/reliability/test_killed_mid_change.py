"""Fault: the bot is SIGKILLed in the middle of a change, then started again.

No half state (the store holds the old or the new credential, the audit chain verifies, the account's
lock is free), the interruption is not silent (audited, and the person is told in Slack), and re-checks
scheduled by an earlier change still run. Real peers throughout: the Samba AD DC, the Slack emulator over
Socket Mode, the WinRM emulator, real `atp-bot` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from bot.audit import AuditRow, open_audit
from bot.change.journal import ChangeJournal, Phase
from bot.config import Settings, load_settings
from bot.directory import AccountLocks
from bot.monitor.scheduler import jobstore_url
from bot.store import open_store
from bot.store.embedded import open_embedded, store_path
from lab.domain import LabDomain, new_password
from lab.samba import LabUser
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator
from tests.conftest import (
    CANARY,
    SENSOR_WINRM_PASSWORD,
    SENSOR_WINRM_PASSWORD_ENV,
    SENSOR_WINRM_USER,
    run_cli,
)
from tests.slack_lab import ALICE, OPS, click_done, values, wait_for

pytestmark = pytest.mark.samba

# Where the CLI is killed: once its journal entry reaches the phase, after the delay (seconds).
KILL_POINTS = [(Phase.TESTING, 0.0), (Phase.TESTING, 0.02)] + [
    (Phase.SAVING, d) for d in (0, 0.001, 0.002, 0.005)
]


def write_config(tmp_path: Path, lab: LabDomain, user: LabUser, extra: str) -> Path:
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{lab.dc.ca_file}"\n' + extra,
        encoding="utf-8",
    )
    return config


def command_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An operator's store command: while `block` exists it says it is saving (its pid in `saving`) and
    hangs; otherwise it records a hash of what it got on stdin (never the password itself)."""
    saved, block, saving = tmp_path / "external-store", tmp_path / "block", tmp_path / "saving"
    saved.mkdir()
    script = tmp_path / "store-command.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{block}" ]; then\n'
        f'  echo $$ > "{saving}.tmp" && mv "{saving}.tmp" "{saving}" && exec sleep 60\n'
        "fi\n"
        f'sha256sum > "{saved}/$(date +%s%N)"\n',
        encoding="utf-8",
    )
    script.chmod(0o700)
    return script, block, saving


def start_bot(config: Path, emulator: SlackEmulator, log: Path) -> subprocess.Popen[str]:
    """`atp-bot run`, its output in a file (a pipe nobody reads while it runs could fill up)."""
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": emulator.bot_token,
        "SLACK_APP_TOKEN": emulator.app_token,
        SENSOR_WINRM_PASSWORD_ENV: SENSOR_WINRM_PASSWORD,
    }
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Every `atp-bot` process a test starts is killed and reaped at teardown, whatever happened."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def submit_password(emulator: SlackEmulator) -> str:
    before = {v.id for v in emulator.open_views(ALICE)}
    emulator.slash_command("password svc")
    (view_id,) = wait_for(lambda: {v.id for v in emulator.open_views(ALICE)} - before, timeout=10)
    delivery = emulator.submit_view(view_id, values(CANARY))
    assert not delivery.late
    return view_id


def view_text(emulator: SlackEmulator, view_id: str) -> str:
    return json.dumps(emulator.view(view_id)["blocks"])


def top_level(emulator: SlackEmulator, needle: str) -> list[str]:
    return [m.ts for m in emulator.messages(OPS) if m.thread_ts is None and needle in m.text]


def advance_recheck(settings: Settings, delay: int) -> None:
    """While the bot is down: make the earlier change's +`delay` min re-check due now, as if the bot had
    been down that long (through APScheduler's own API on the bot's persistent job store)."""
    aps = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=jobstore_url(settings))})
    aps.start(paused=True)
    try:
        ids = sorted(job.id for job in aps.get_jobs() if job.id.startswith("recheck:svc:"))
        assert [i.rsplit(":", 1)[1] for i in ids] == ["10", "2"]  # both survived the SIGKILL
        (job_id,) = [i for i in ids if i.endswith(f":{delay}")]
        aps.modify_job(job_id, next_run_time=datetime.now(UTC))
    finally:
        aps.remove_jobstore("default", shutdown=True)  # never let this scheduler run the job itself
        aps.shutdown(wait=False)


def audit_rows(settings: Settings) -> list[AuditRow]:
    """The account's audit rows, oldest first, after checking the chain. The engine is disposed: a
    connection left idle in this process would lose its SQLite locks when the next `open_audit` opens
    and closes the file (POSIX advisory locks are per process), and the bot's processes share the file."""
    trail = open_audit(settings)
    try:
        verification = trail.verify()
        assert verification.intact, verification.problem
        return list(reversed(trail.recent("svc", 200)))
    finally:
        trail.engine.dispose()


def assert_no_canary_in(state: Path, *texts: str, allowed: tuple[str, ...] = ()) -> None:
    for path in state.rglob("*"):
        if path.is_file() and path.name not in allowed:
            assert CANARY.encode() not in path.read_bytes(), path
    for text in texts:
        assert CANARY not in text


def test_the_bot_killed_between_test_and_save_tells_the_person_and_recovers(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    script, block, saving = command_store(tmp_path)
    user = SENSOR_WINRM_USER.replace("\\", "\\\\")
    emulator = SlackEmulator().start()
    try:
        config = write_config(
            tmp_path,
            lab_domain,
            fresh_user,
            f'[slack]\napi_url = "{emulator.api_url}"\nchannel = "{OPS}"\nallowed_users = ["{ALICE}"]\n'
            f'[store]\nbackend = "command"\n[store.command]\nargv = ["{script}"]\n'
            f'[winrm]\nusername = "{user}"\npassword_env = "{SENSOR_WINRM_PASSWORD_ENV}"\n'
            'transport = "ntlm"\n'
            + "".join(
                f'[[sensors]]\nname = "{n}"\nendpoint = "{sensors.endpoint(n)}"\naccount = "svc"\n'
                for n in sensors.hosts
            ),
        )
        settings = load_settings(config)
        state = tmp_path / "state"

        # An earlier change succeeds: it schedules its re-checks (+2 and +10 min) in the job store.
        first = start_bot(config, emulator, tmp_path / "first.log")
        processes.append(first)
        wait_for(lambda: emulator.connected_apps, timeout=20)
        submit_password(emulator)
        (earlier,) = wait_for(
            lambda: top_level(emulator, "changed the directory service account"), timeout=15
        )
        announced = next(m for m in emulator.messages(OPS) if m.ts == earlier)
        click_done(emulator, announced)  # the portal step: the follow-up checks start now
        wait_for(
            lambda: [m for m in emulator.messages(OPS) if m.thread_ts == earlier and "All 2" in m.text],
            timeout=20,
        )

        # The next change passes its test, and the store command hangs: the bot is between test and save.
        block.touch()
        submit_password(emulator)
        wait_for(saving.exists, timeout=15)
        (in_flight,) = ChangeJournal(state).entries()
        assert (in_flight.phase, in_flight.actor) == (Phase.SAVING, "slack:U0ALICE (alice)")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        store_command = int(saving.read_text())
        try:
            os.kill(store_command, 0)  # the orphaned store command still runs…
            with AccountLocks(state).hold("svc"):  # …and yet the lock died with the bot
                pass
        finally:
            os.kill(store_command, signal.SIGKILL)
        block.unlink()
        wait_for(lambda: emulator.connected_apps == 0, timeout=10)
        assert len(list((tmp_path / "external-store").iterdir())) == 1  # only the earlier change
        earlier_save = open_store(settings).metadata("svc")
        assert earlier_save is not None and earlier_save.saved_at < in_flight.started_at
        advance_recheck(settings, 2)

        # The restart resolves the interrupted change, tells the channel and runs the missed re-check.
        second = start_bot(config, emulator, tmp_path / "second.log")
        processes.append(second)
        (notice,) = wait_for(lambda: top_level(emulator, "was interrupted by a restart"), timeout=20)
        text = next(m.text for m in emulator.messages(OPS) if m.ts == notice)
        assert f"started by <@{ALICE}> at {in_flight.started_at:%H:%M} UTC" in text
        assert "the command store was saving it, and the store never confirmed the save" in text
        assert "run `/atp password svc` again" in text
        recheck = wait_for(
            lambda: [m for m in emulator.messages(OPS) if m.thread_ts == earlier and "Re-check" in m.text],
            timeout=20,
        )
        assert "*Re-check* 2 min after the change" in recheck[0].text
        assert ChangeJournal(state).entries() == []

        story = [(r.action, r.outcome, r.reason) for r in audit_rows(settings)]
        assert story[:5] == [
            ("test", "ok", None),
            ("save", "ok", None),
            ("portal-updated", "ok", None),
            ("check", "ok", None),
            ("test", "ok", None),
        ]
        assert ("interrupted", "error", "unconfirmed") in story[5:]
        verify = run_cli(config, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # The account can be changed again right away.
        view_id = submit_password(emulator)
        wait_for(lambda: "Saved." in view_text(emulator, view_id), timeout=15)
        saved = sorted((tmp_path / "external-store").iterdir())
        assert len(saved) == 2
        assert saved[-1].read_text().split()[0] == hashlib.sha256(f"{CANARY}\n".encode()).hexdigest()

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        first_log, second_log = (tmp_path / "first.log").read_text(), (tmp_path / "second.log").read_text()
        assert "resolved 1 interrupted change(s) in" in second_log
        assert_no_canary_in(state, first_log, second_log, json.dumps([c.args for c in emulator.calls()]))
    finally:
        emulator.stop()


def test_set_password_killed_at_any_point_leaves_the_old_or_the_new_credential(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    env: None,
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],
) -> None:
    old = new_password()
    lab_domain.dc.set_password(fresh_user.name, old)
    # A kill mid-test leaves the test counted by the lockout guard (AD may have counted it): allow more
    # than the two kills while testing, or the last, right password would be refused.
    config = write_config(tmp_path, lab_domain, fresh_user, "[lockout_guard]\nmax_rejections = 10\n")
    settings = load_settings(config)
    state = tmp_path / "state"
    journal = ChangeJournal(state)
    assert run_cli(config, "store", "init").returncode == 0
    first = run_cli(
        config, "set-password", "--account", "svc", "--password-stdin", "--no-checks", stdin=old + "\n"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    outputs: list[str] = []

    def change() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot",
                "--config",
                str(config),
                "set-password",
                "--account",
                "svc",
                "--password-stdin",
                "--no-checks",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdin is not None
        process.stdin.write(CANARY + "\n")
        process.stdin.close()
        return process

    def killed(process: subprocess.Popen[str]) -> None:
        process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None and process.stderr is not None
        outputs.extend((process.stdout.read(), process.stderr.read()))

    def assert_whole() -> str:
        saved = open_embedded(settings).read("svc")
        assert saved is not None and saved.get_secret_value() in (old, CANARY)
        audit_rows(settings)
        with AccountLocks(state).hold("svc"):
            pass
        return saved.get_secret_value()

    # Deterministic: the store is busy (another writer holds its lock), so the CLI waits inside the save.
    with closing(sqlite3.connect(store_path(settings), isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        process = change()
        wait_for(lambda: [e for e in journal.entries() if e.phase is Phase.SAVING], timeout=20)
        time.sleep(0.2)
        killed(process)
        writer.execute("ROLLBACK")
    assert assert_whole() == old
    interrupted = {e.id for e in journal.entries()}
    assert len(interrupted) == 1

    # Anywhere else: while testing, and just as the save begins (before, during or after the commit).
    for phase, delay in KILL_POINTS:
        known = {e.id for e in journal.entries()}  # a leftover from the last kill, maybe
        process = change()
        deadline = time.monotonic() + 20
        while process.poll() is None and not [
            e for e in journal.entries() if e.id not in known and phase in (Phase.TESTING, e.phase)
        ]:
            assert time.monotonic() < deadline, "the change never reached the kill point"
        time.sleep(delay)
        killed(process)
        assert_whole()
        interrupted |= {e.id for e in journal.entries()}  # each change first resolves the leftover

    done = run_cli(
        config, "set-password", "--account", "svc", "--password-stdin", "--no-checks", stdin=CANARY + "\n"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert assert_whole() == CANARY
    assert journal.entries() == []
    rows = audit_rows(settings)
    resolved = [r for r in rows if r.action == "interrupted"]
    assert {r.reason for r in resolved} <= {"not-saved", "saved"}  # the embedded store is never unsure
    assert any("interrupted while testing; nothing was saved" in (r.detail or "") for r in resolved)
    assert "AN EARLIER CHANGE WAS INTERRUPTED" in "".join(outputs) + done.stdout
    assert len([r for r in rows if r.action == "interrupted"]) == len(interrupted)
    assert run_cli(config, "audit", "verify").returncode == 0
    assert_no_canary_in(state, done.stdout, done.stderr, *outputs, allowed=("credentials.sqlite",))
