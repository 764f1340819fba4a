"""The portal step from a shell: `set-password` says what to do in the Defender portal and, at a terminal,
waits for Enter before the follow-up checks; `--portal-done`, `--no-wait`, and no terminal
(`--password-stdin`) never wait; `portal-done` confirms a pending step once (exit 0, then 1). Real child
processes on a pty, real Samba DC, WinRM emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.change.portal import PORTAL_URL
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, run_cli
from tests.test_cli_change import audit_rows, on_terminal, write_config

pytestmark = pytest.mark.samba

STEP = (
    "NOT YET IN DEFENDER FOR IDENTITY: Microsoft Defender portal > Settings > Identities > Directory service"
)
PROMPT = "Press Enter once it is saved in the portal"


@pytest.fixture
def config(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> Path:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    path = write_config(tmp_path, lab_domain, fresh_user, sensors)
    assert run_cli(path, "store", "init").returncode == 0
    return path


def typed_password(keys_after: bytes | None) -> list[tuple[str, bytes]]:
    typed = [("New password for", CANARY.encode() + b"\n"), ("Confirm password", CANARY.encode() + b"\n")]
    return typed + ([(PROMPT, keys_after)] if keys_after is not None else [])


def test_at_a_terminal_set_password_waits_for_enter_then_checks(config: Path, fresh_user: LabUser) -> None:
    code, shown = on_terminal(config, "set-password", "--account", "svc", typed=typed_password(b"\n"))
    assert code == 0, shown
    assert STEP in shown and PORTAL_URL in shown and fresh_user.upn in shown
    assert shown.index(PROMPT) < shown.index("Portal step confirmed") < shown.index("Checking 2 sensor(s)")
    assert "2 of 2 ok" in shown
    assert [row[:2] for row in audit_rows(config)] == [
        ("test", "ok"),
        ("save", "ok"),
        ("portal-updated", "ok"),
        ("check", "ok"),
    ]
    assert CANARY not in shown


def test_ctrl_d_at_the_wait_leaves_the_step_pending_for_portal_done(config: Path) -> None:
    code, shown = on_terminal(config, "set-password", "--account", "svc", typed=typed_password(b"\x04"))
    assert code == 0, shown  # saved
    assert "atp-bot portal-done --account svc" in shown and "Checking" not in shown
    assert [row[0] for row in audit_rows(config)] == ["test", "save"]

    done = run_cli(config, "portal-done", "--account", "svc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Portal step confirmed" in done.stdout and "2 of 2 ok" in done.stdout
    assert [row[0] for row in audit_rows(config)] == ["test", "save", "portal-updated", "check"]
    again = run_cli(config, "portal-done", "--account", "svc")
    assert again.returncode == 1 and "Nothing is waiting for the portal step of svc" in again.stdout
    assert [row[0] for row in audit_rows(config)].count("portal-updated") == 1


def test_no_wait_and_no_terminal_never_wait(config: Path) -> None:
    code, shown = on_terminal(
        config, "set-password", "--account", "svc", "--no-wait", typed=typed_password(None)
    )
    assert code == 0, shown
    assert STEP in shown and PROMPT not in shown and "Checking" not in shown

    scripted = run_cli(config, "set-password", "--account", "svc", "--password-stdin", stdin=CANARY + "\n")
    assert scripted.returncode == 0, scripted.stdout + scripted.stderr
    assert STEP in scripted.stdout and PROMPT not in scripted.stdout and "Checking" not in scripted.stdout
    assert "atp-bot portal-done --account svc" in scripted.stdout

    at_once = run_cli(
        config, "set-password", "--account", "svc", "--password-stdin", "--portal-done", stdin=CANARY + "\n"
    )
    assert at_once.returncode == 0, at_once.stdout + at_once.stderr
    assert "Portal step confirmed" in at_once.stdout and "2 of 2 ok" in at_once.stdout
    actions = [row[0] for row in audit_rows(config)]
    assert actions.count("save") == 3 and actions.count("portal-updated") == 1 and actions[-1] == "check"
