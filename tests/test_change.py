"""The change path end to end: real Samba DC, WinRM emulator, embedded store and audit trail.

lock → connection test → save (only if the test passed) → audit → follow-up sensor checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.audit import open_audit
from bot.change import ChangeProgress, ChangeStatus, PasswordChanges, open_changes
from bot.config import Settings, load_settings
from bot.directory import AccountLocks, ConnectionTestResult
from bot.infra.state_dir import state_dir
from bot.store import open_store
from lab.ata_center import AtaCenterEmulator
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, SENSOR_WINRM_USER, assert_no_canary, run_cli

pytestmark = pytest.mark.samba


def write_config(
    tmp_path: Path, lab: LabDomain, user: LabUser, sensors: WinRMEmulator, store: str = ""
) -> Path:
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{lab.dc.ca_file}"\n'
        f'[winrm]\nusername = "{SENSOR_WINRM_USER.replace(chr(92), chr(92) * 2)}"\n'
        'password_env = "ATP_BOT_TEST_WINRM"\ntransport = "ntlm"\n'
        + "".join(
            f'[[sensors]]\nname = "{name}"\nendpoint = "{sensors.endpoint(name)}"\naccount = "svc"\n'
            for name in sensors.hosts
        )
        + store
    )
    return config


def test_set_password_tests_saves_audits_and_checks(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    config = write_config(tmp_path, lab_domain, fresh_user, sensors)
    assert run_cli(config, "store", "init").returncode == 0

    args = ("set-password", "--account", "svc", "--password-stdin", "--portal-done")
    done = run_cli(config, *args, stdin=CANARY + "\n")
    assert done.returncode == 0, done.stdout + done.stderr  # saved: the checks' findings do not count
    assert "PASSED: account svc" in done.stdout
    assert "SAVED: account svc in the embedded store" in done.stdout
    assert "sensor01  ok" in done.stdout
    assert done.stdout.count("sensor01") == 1  # the table once, no per-sensor lines before it
    assert "sensor02: service AATPSensor is Stopped" in done.stdout
    assert done.stdout.rstrip().endswith("1 of 2 ok (1 with a problem)")

    settings = load_settings(config)
    saved = open_store(settings).read("svc")
    assert saved is not None
    assert saved.get_secret_value() == CANARY
    actions = [(r.action, r.outcome) for r in reversed(open_audit(settings).recent("svc"))]
    assert actions == [("test", "ok"), ("save", "ok"), ("portal-updated", "ok"), ("check", "failed")]
    strict = run_cli(config, *args, "--strict-checks", stdin=CANARY + "\n")
    assert strict.returncode == 1, strict.stdout + strict.stderr  # --strict-checks: the checks count
    history = run_cli(config, "history", "--account", "svc")
    assert history.returncode == 0
    for text in (done.stdout, done.stderr, history.stdout):
        assert CANARY not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_set_password_through_the_command_and_ata_center_stores(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    received = tmp_path / "received"
    script = tmp_path / "vault-put"
    script.write_text(f"#!/bin/sh\ncat > '{received}'\necho stored\n")
    script.chmod(0o700)
    command_store = f'[store]\nbackend = "command"\n[store.command]\nargv = ["{script}", "--account"]\n'
    config = write_config(tmp_path / "command", lab_domain, fresh_user, sensors, command_store)
    done = run_cli(
        config, "set-password", "--account", "svc", "--password-stdin", "--no-checks", stdin=CANARY + "\n"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAVED: account svc in the command store" in done.stdout
    assert "NOT YET IN DEFENDER FOR IDENTITY" in done.stdout  # an operator's store: the portal step too
    assert received.read_text().strip() == CANARY

    with AtaCenterEmulator(tmp_path / "center", account_user=fresh_user.name) as center:
        secret = tmp_path / "ata-admin"
        secret.write_text(center.password)
        ata_store = (
            f'[store]\nbackend = "ata-center"\n[store.ata_center]\nurl = "{center.url}"\n'
            f'username = "{center.username.replace(chr(92), chr(92) * 2)}"\npassword_file = "{secret}"\n'
            f'ca_file = "{center.tls.ca_file}"\n'
        )
        config = write_config(tmp_path / "ata", lab_domain, fresh_user, sensors, ata_store)
        done = run_cli(
            config, "set-password", "--account", "svc", "--password-stdin", "--no-checks", stdin=CANARY + "\n"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SAVED: account svc in the ata-center store" in done.stdout
        assert center.stored_password == CANARY
        assert "portal" not in done.stdout.lower()  # the sensors read the Center's store: no portal step
        assert "portal-updated" not in [r.action for r in open_audit(load_settings(config)).recent("svc")]
        none = run_cli(config, "portal-done", "--account", "svc", "--no-checks")
        assert none.returncode == 1 and "No portal step" in none.stdout
    assert CANARY not in done.stdout + done.stderr


def test_a_rejected_password_is_never_saved(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, sensors)
    assert run_cli(config, "store", "init").returncode == 0
    done = run_cli(config, "set-password", "--account", "svc", "--password-stdin", stdin=CANARY + "\n")
    assert done.returncode == 1
    assert "REJECTED: account svc: The password is wrong" in done.stdout
    assert "NOT SAVED: the password did not pass the connection test." in done.stdout
    assert "sensor01" not in done.stdout  # no follow-up checks after a failed change
    settings = load_settings(config)
    assert open_store(settings).read("svc") is None
    assert [(r.action, r.outcome, r.reason) for r in open_audit(settings).recent("svc")] == [
        ("test", "failed", "wrong_password")
    ]
    assert CANARY not in done.stdout + done.stderr


def test_without_a_store_nothing_is_tested(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, sensors)
    done = run_cli(config, "set-password", "--account", "svc", "--password-stdin", stdin="Whatever-1\n")
    assert done.returncode == 2
    assert "create it with `atp-bot store init`" in done.stderr
    assert "Traceback" not in done.stderr
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0


class Recorder(ChangeProgress):
    def __init__(self) -> None:
        self.steps: list[str] = []

    def testing(self, account: object) -> None:
        self.steps.append("testing")

    def tested(self, result: ConnectionTestResult) -> None:
        self.steps.append(f"tested:{result.outcome}")


def changes_for(config: Path) -> tuple[Settings, PasswordChanges]:
    settings = load_settings(config)
    return settings, open_changes(settings)


def test_store_failure_after_a_passed_test_is_reported_and_audited(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    canary_logs: pytest.LogCaptureFixture,
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    failing = tmp_path / "failing-store"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'vault sealed' >&2\nexit 3\n")
    failing.chmod(0o700)
    store = f'[store]\nbackend = "command"\n[store.command]\nargv = ["{failing}"]\n'
    _, changes = changes_for(write_config(tmp_path, lab_domain, fresh_user, sensors, store))
    recorder = Recorder()
    outcome = changes.change("svc", SecretStr(CANARY), "cli:test", recorder)
    assert outcome.status is ChangeStatus.SAVE_FAILED
    assert outcome.message.startswith("Tested OK but NOT saved:")
    assert recorder.steps == ["testing", "tested:passed"]
    rows = [(r.action, r.outcome) for r in reversed(changes.audit.recent("svc"))]
    assert rows == [("test", "ok"), ("save", "error")]
    assert_no_canary(canary_logs, outcome.message)


def test_a_change_in_flight_makes_a_second_one_wait_for_nothing(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, sensors)
    assert run_cli(config, "store", "init").returncode == 0
    settings, changes = changes_for(config)
    with AccountLocks(state_dir(settings)).hold("svc"):
        outcome = changes.change("svc", SecretStr(fresh_user.password), "slack:U2 (bob)")
    assert outcome.status is ChangeStatus.NOT_STARTED
    assert "in progress" in outcome.message
    assert [(r.action, r.outcome, r.reason) for r in changes.audit.recent("svc")] == [
        ("test", "refused", "busy")
    ]
