"""`test-connection` and `set-password` as an operator runs them (real child processes, a terminal where a
person types): input refused before any bind, Ctrl-D, a missing ca_file, every test audited, output that
says each thing once, exit codes scripts rely on, and a CLI change announced in the Slack channel.
Real Samba DC, WinRM emulator, Slack emulator."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.audit import open_audit
from bot.config import load_settings
from bot.directory import LockoutGuard
from bot.store import open_store
from commands.password.portal import DONE_ACTION
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, SENSOR_WINRM_USER, closed_port_url, run_cli

pytestmark = pytest.mark.samba

REPO = Path(__file__).resolve().parent.parent


def write_config(
    tmp_path: Path,
    lab: LabDomain,
    user: LabUser,
    sensors: WinRMEmulator | None = None,
    *,
    dcs: Sequence[str] = (),
    ca_file: Path | None = None,
    extra: str = "",
) -> Path:
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "atp-bot.toml"
    urls = ", ".join(f'"{u}"' for u in (dcs or [lab.dc.ldaps_url]))
    text = (
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = [{urls}]\nca_file = "{ca_file or lab.dc.ca_file}"\n'
    )
    if sensors is not None:
        text += (
            f'[winrm]\nusername = "{SENSOR_WINRM_USER.replace(chr(92), chr(92) * 2)}"\n'
            'password_env = "ATP_BOT_TEST_WINRM"\ntransport = "ntlm"\n'
        )
        text += "".join(
            f'[[sensors]]\nname = "{name}"\nendpoint = "{sensors.endpoint(name)}"\naccount = "svc"\n'
            for name in sensors.hosts
        )
    config.write_text(text + extra)
    return config


def run_bytes(config: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[str]:
    """`run_cli` with raw bytes on standard input."""
    env = {k: v for k, v in os.environ.items() if k != "ATP_BOT_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        check=False,
        env=env,
        timeout=120,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def _take_terminal() -> None:
    """In the child, after setsid: make the pty on stdin the controlling terminal (getpass opens /dev/tty)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_terminal(config: Path, *args: str, typed: Sequence[tuple[str, bytes]]) -> tuple[int, str]:
    """Run atp-bot on a terminal: for each (prompt, keys), wait for the prompt and type the keys.
    Returns the exit code and everything the terminal showed."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "ATP_BOT_CONFIG"}
    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(follower)
    shown = b""
    try:
        for prompt, keys in typed:
            while prompt.encode() not in shown:
                chunk = _read(leader, 30.0)
                assert chunk, f"no prompt {prompt!r}; the terminal showed {shown!r}"
                shown += chunk
            os.write(leader, keys)
        code = child.wait(timeout=60)
        while chunk := _read(leader, 0.5):
            shown += chunk
        return code, shown.decode(errors="replace")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(leader)


def _read(fd: int, timeout: float) -> bytes:
    """What the terminal shows next; b"" when nothing comes within `timeout` or the child closed it."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the child has closed the terminal
        return b""


def audit_rows(config: Path) -> list[tuple[str, str, str | None]]:
    """The account's audit rows, oldest first: (action, outcome, reason)."""
    rows = open_audit(load_settings(config)).recent("svc")
    return [(r.action, r.outcome, r.reason) for r in reversed(rows)]


def rejections_counted(config: Path) -> int:
    return LockoutGuard.for_settings(load_settings(config)).count("svc").rejections


@pytest.mark.parametrize(
    ("command", "typed"),
    [
        ("test-connection", [("New password for", b"\x04")]),
        ("set-password", [("New password for", b"\x04")]),
        ("set-password", [("New password for", b"Good-Pa55word!\n"), ("Confirm password", b"\x04")]),
    ],
)
def test_ctrl_d_at_a_prompt_is_no_password_entered(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    env: None,
    tmp_path: Path,
    command: str,
    typed: list[tuple[str, bytes]],
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user)
    assert run_cli(config, "store", "init").returncode == 0
    code, shown = on_terminal(config, command, "--account", "svc", typed=typed)
    assert code == 2, shown
    assert "No password entered. Nothing was tested or saved." in shown
    assert "Traceback" not in shown
    assert "EOFError" not in shown
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0


def test_a_confirmation_mismatch_is_refused_and_audited(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user)
    assert run_cli(config, "store", "init").returncode == 0
    typed = [("New password for", b"Good-Pa55word!\n"), ("Confirm password", b"Other-Pa55word!\n")]
    code, shown = on_terminal(config, "set-password", "--account", "svc", typed=typed)
    assert code == 2, shown
    assert "The two passwords do not match. Nothing was tested or saved." in shown
    assert audit_rows(config) == [("change", "refused", "invalid-input")]
    assert "Pa55word" not in open_audit(load_settings(config)).recent("svc")[0].detail


@pytest.mark.parametrize(("command", "action"), [("test-connection", "test"), ("set-password", "change")])
def test_undecodable_input_is_refused_before_any_bind_and_not_counted(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path, command: str, action: str
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user)
    assert run_cli(config, "store", "init").returncode == 0
    latin1 = "Caf\xe9-Pa55word!\n".encode("latin-1")  # not UTF-8: a file in another encoding
    done = run_bytes(config, command, "--account", "svc", "--password-stdin", stdin=latin1)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "The password is not valid text" in done.stderr
    assert "Nothing was tested or saved." in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "did not answer" not in done.stdout
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0
    assert rejections_counted(config) == 0
    assert audit_rows(config) == [(action, "refused", "invalid-input")]


def test_a_missing_ca_file_is_a_configuration_error_in_both_commands(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path
) -> None:
    """The configuration's files are checked when it is loaded: a CA bundle gone missing stops both
    commands before anything is read, tested or sent, with the key, the file and the line."""
    missing = tmp_path / "contoso-ca.pem"
    missing.write_bytes(lab_domain.dc.ca_file.read_bytes())
    config = write_config(tmp_path, lab_domain, fresh_user, ca_file=missing)
    assert run_cli(config, "store", "init").returncode == 0
    missing.unlink()

    tested = run_cli(config, "test-connection", "--account", "svc", "--password-stdin", stdin=CANARY + "\n")
    changed = run_cli(config, "set-password", "--account", "svc", "--password-stdin", stdin=CANARY + "\n")
    for done in (tested, changed):
        assert done.returncode == 2, done.stdout + done.stderr
        assert "ca_file" in done.stderr and str(missing) in done.stderr and "line" in done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert CANARY not in done.stdout + done.stderr
    assert open_store(load_settings(config)).read("svc") is None
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0
    assert rejections_counted(config) == 0


def test_the_example_configuration_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's quick start: the example, copied unchanged, names a ca_file that does not exist."""
    config = tmp_path / "atp-bot.toml"
    shutil.copy(REPO / "examples" / "atp-bot.toml", config)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    done = run_cli(config, "test-connection", "--account", "contoso", "--password-stdin", stdin="Any-Pa55!\n")
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "ca_file" in said and "/etc/atp-bot/contoso-ca.pem" in said
    assert "Traceback" not in said


def test_test_connection_audits_every_test_and_says_each_thing_once(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user)
    url = lab_domain.dc.ldaps_url

    passed = run_cli(
        config, "test-connection", "--account", "svc", "--password-stdin", stdin=fresh_user.password
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.count("expires") == 1, passed.stdout
    assert passed.stdout.count(url) == 1, passed.stdout

    rejected = run_cli(
        config, "test-connection", "--account", "svc", "--password-stdin", stdin="Wrong-Pa55!\n"
    )
    assert rejected.returncode == 1
    assert rejected.stdout.count("The password is wrong") == 1, rejected.stdout

    down = write_config(tmp_path / "down", lab_domain, fresh_user, dcs=[closed_port_url(), closed_port_url()])
    unreachable = run_cli(
        down, "test-connection", "--account", "svc", "--password-stdin", stdin="Any-Pa55!\n"
    )
    assert unreachable.returncode == 3
    assert unreachable.stdout.count("No domain controller could be reached") == 1, unreachable.stdout
    assert unreachable.stdout.count("Connection refused") == 2, unreachable.stdout  # once per DC

    assert audit_rows(config) == [("test", "ok", None), ("test", "failed", "wrong_password")]
    details = [r.detail or "" for r in open_audit(load_settings(config)).recent("svc")]
    assert all(d.count(url) <= 1 for d in details), details
    history = run_cli(config, "history", "--account", "svc")
    assert "wrong_password" in history.stdout
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 1


def test_a_saved_change_exits_0_whatever_the_checks_find(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    sensors.set_fault("sensor02", "refused")
    config = write_config(
        tmp_path, lab_domain, fresh_user, sensors, extra="[sensor_checks]\nhost_timeout = 3\n"
    )
    assert run_cli(config, "store", "init").returncode == 0
    args = ("set-password", "--account", "svc", "--password-stdin", "--portal-done")
    done = run_cli(config, *args, stdin=fresh_user.password + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAVED: account svc" in done.stdout
    assert "sensor02: not checked: unreachable" in done.stdout
    assert done.stdout.rstrip().endswith("1 of 2 ok (1 unreachable)")
    strict = run_cli(config, *args, "--strict-checks", stdin=fresh_user.password + "\n")
    assert strict.returncode == 3, strict.stdout + strict.stderr


def test_a_cli_change_is_announced_in_the_slack_channel(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inherited = tmp_path / "store-environment"
    store = tmp_path / "vault-put"
    store.write_text(f"#!/bin/sh\ncat >/dev/null\nenv > '{inherited}'\n")
    store.chmod(0o700)
    with SlackEmulator() as slack:
        tables = (
            f'[slack]\napi_url = "{slack.api_url}"\nchannel = "C0OPS"\n'
            f'[store]\nbackend = "command"\n[store.command]\nargv = ["{store}"]\n'
        )
        config = write_config(tmp_path, lab_domain, fresh_user, extra=tables)
        args = ("set-password", "--account", "svc", "--password-stdin", "--no-checks")

        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
        done = run_cli(config, *args, stdin=fresh_user.password + "\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Announced in Slack channel C0OPS." in done.stdout
        (posted,) = slack.messages("C0OPS")
        actor = f"cli:{getpass.getuser()}"
        assert f"`{actor}` changed the directory service account password for *svc*" in posted.text
        assert fresh_user.upn in posted.text
        assert "Verified by" in posted.text
        assert slack.bot_token not in inherited.read_text()  # the store's child never gets the token
        assert "Tested and kept in the command store; Defender for Identity gets it when" in posted.text
        assert DONE_ACTION in json.dumps(posted.blocks)  # a running bot takes the click

        confirmed = run_cli(config, *args, "--portal-done", stdin=fresh_user.password + "\n")
        assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
        updated = slack.messages("C0OPS")[-1]  # the button became who confirmed it, and when
        assert f"*Done in the portal*: confirmed by `{actor}` at" in json.dumps(updated.blocks)
        assert DONE_ACTION not in json.dumps(updated.blocks)

        slack.fail("chat.postMessage", status=200, error="channel_not_found")
        refused = run_cli(config, *args, stdin=fresh_user.password + "\n")
        monkeypatch.delenv("SLACK_BOT_TOKEN")
        no_token = run_cli(config, *args, stdin=fresh_user.password + "\n")
    for done in (refused, no_token):
        assert done.returncode == 0, done.stdout + done.stderr  # saved: a failed announcement is a warning
        assert "SAVED: account svc" in done.stdout
        assert "WARNING: the change was not announced in Slack channel C0OPS" in done.stderr
        assert "Traceback" not in done.stderr
    assert "channel_not_found" in refused.stderr
    assert "SLACK_BOT_TOKEN" in no_token.stderr
    announced = [(a, o) for a, o, _ in audit_rows(config) if a == "announce"]
    assert announced == [("announce", "ok"), ("announce", "ok"), ("announce", "error"), ("announce", "error")]
    assert fresh_user.password not in done.stdout + done.stderr + posted.text
